// Builds Kinesis egress records with the OFFICIAL StateFun JavaScript SDK (apache-flink-statefun from
// npm): node js_records.js SDK_DIR, where SDK_DIR is the SDK's folder in a node_modules. Reads cases as
// JSON on stdin (see python_records.py: the same cases) and writes one JSON object per case on stdout:
// {"egress": <the EgressMessage's typename>, "typed_value": <hex of the serialized TypedValue>}.
// The SDK's argument for the explicit hash key is `hashKey`; a case's null means it is not given.
"use strict";

const { kinesisEgressMessage } = require(process.argv[2]);

const input = require("fs").readFileSync(0, "utf8");
const results = JSON.parse(input).map((c) => {
  const args = {
    typename: c.typename,
    stream: c.stream,
    value: "text" in c.value ? c.value.text : Buffer.from(c.value.hex, "hex"),
    partitionKey: c.partition_key,
  };
  if (c.explicit_hash_key !== null) {
    args.hashKey = c.explicit_hash_key;
  }
  const message = kinesisEgressMessage(args);
  return { egress: message.typename, typed_value: Buffer.from(message.typedValue.serializeBinary()).toString("hex") };
});
process.stdout.write(JSON.stringify(results));
