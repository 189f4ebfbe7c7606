// The smoke test's command interpreter (compat/interpreter/README.md) on the official StateFun
// JavaScript SDK (apache-flink-statefun). Usage: node index.js PORT; it serves POST /statefun on
// 127.0.0.1:PORT until SIGTERM/SIGINT (or SIGKILL).
"use strict";

const http = require("http");
const { StateFun, messageBuilder, kafkaEgressMessage } = require("apache-flink-statefun");

const FUNCTION_TYPE = "statefun.smoke.e2e/command-interpreter-fn";
const COMMANDS_TYPE = StateFun.jsonType("statefun.smoke.e2e/commands");
const DISCARD_SINK = "statefun.smoke.e2e/discard-sink";
const VERIFICATION_SINK = "statefun.smoke.e2e/verification-sink";

function integer(command, key) {
  const value = command[key];
  if (!Number.isInteger(value)) {
    throw new Error(`${command.op}: ${key} must be an integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

function commandsMessage(command) {
  return messageBuilder({
    typename: FUNCTION_TYPE,
    id: String(integer(command, "target")),
    value: { commands: command.commands === undefined || command.commands === null ? [] : command.commands },
    valueType: COMMANDS_TYPE,
  });
}

function interpret(context, message) {
  if (!message.is(COMMANDS_TYPE)) {
    throw new Error(`unexpected message type ${message.valueTypeName}`);
  }
  const { commands } = message.as(COMMANDS_TYPE);
  const self = context.self.id;
  for (const command of commands) {
    switch (command.op) {
      case "increment":
        context.storage.state = (context.storage.state || 0) + 1;
        break;
      case "send":
        context.send(commandsMessage(command));
        break;
      case "send_after": {
        const token = typeof command.token === "string" && command.token !== "" ? command.token : undefined;
        context.sendAfter(integer(command, "delay_ms"), commandsMessage(command), token);
        break;
      }
      case "cancel":
        context.cancelDelayedMessage(command.token);
        break;
      case "egress":
        context.send(kafkaEgressMessage({
          typename: DISCARD_SINK,
          topic: command.topic,
          key: self,
          value: "discarded-message",
        }));
        break;
      case "verify": {
        if (!/^-?\d+$/.test(self)) {
          throw new Error(`verify: id ${JSON.stringify(self)} is not a decimal integer`);
        }
        const expected = integer(command, "expected");
        const actual = context.storage.state || 0;
        context.send(kafkaEgressMessage({
          typename: VERIFICATION_SINK,
          topic: command.topic,
          key: self,
          value: `{"id": ${BigInt(self)}, "expected": ${expected}, "actual": ${actual}}`,
        }));
        break;
      }
      default:
        throw new Error(`unknown op ${JSON.stringify(command.op)}`);
    }
  }
}

const statefun = new StateFun();
statefun.bind({
  typename: FUNCTION_TYPE,
  specs: [{ name: "state", type: StateFun.intType() }],
  fn(context, message) {
    try {
      interpret(context, message);
    } catch (error) {
      // the SDK answers HTTP 500 without a word; say why here
      console.error(`${FUNCTION_TYPE}/${context.self.id}: ${error}`);
      throw error;
    }
  },
});

const port = Number(process.argv[2]);
if (process.argv.length !== 3 || !Number.isInteger(port)) {
  console.error("usage: node index.js PORT");
  process.exit(2);
}

const handler = statefun.handler();
const server = http.createServer((req, res) => {
  const path = req.url.split("?")[0];
  if (req.method === "POST" && path === "/statefun") {
    handler(req, res);
  } else {
    res.writeHead(req.method === "POST" ? 404 : 405);
    res.end();
  }
});
server.listen(port, "127.0.0.1", () => {
  console.error(`command interpreter (JavaScript SDK) serving on http://127.0.0.1:${port}/statefun`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
