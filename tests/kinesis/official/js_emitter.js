// The function of emitter.py on the OFFICIAL StateFun JavaScript SDK: node js_emitter.js SDK_DIR PORT serves
// ko/emitter on POST http://127.0.0.1:PORT/statefun. It takes the same JSON list of records and emits each
// with kinesisEgressMessage exactly as given (the explicit hash key as its `hashKey`, null: not given).
"use strict";

const http = require("http");
const { StateFun, kinesisEgressMessage } = require(process.argv[2]);

const statefun = new StateFun();
statefun.bind({
  typename: "ko/emitter",
  fn(context, message) {
    try {
      for (const record of JSON.parse(Buffer.from(message.rawValueBytes).toString("utf8"))) {
        const args = {
          typename: record.egress,
          stream: record.stream,
          value: "text" in record.value ? record.value.text : Buffer.from(record.value.hex, "hex"),
          partitionKey: record.partition_key,
        };
        if (record.explicit_hash_key !== null) {
          args.hashKey = record.explicit_hash_key;
        }
        context.send(kinesisEgressMessage(args));
      }
    } catch (error) {
      console.error(`ko/emitter/${context.self.id}: ${error}`); // the SDK answers 500 without a word
      throw error;
    }
  },
});

const handler = statefun.handler();
http.createServer((req, res) => {
  if (req.method === "POST" && req.url.split("?")[0] === "/statefun") {
    handler(req, res);
  } else {
    res.writeHead(404);
    res.end();
  }
}).listen(Number(process.argv[3]), "127.0.0.1");
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
