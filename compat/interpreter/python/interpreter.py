"""The smoke test's command interpreter (compat/interpreter/README.md) on the official StateFun Python SDK
(apache-flink-statefun 3.3.0), served with aiohttp. Run with the official SDK's virtualenv
(scripts/official-sdk-venv): ``python interpreter.py PORT`` serves POST /statefun on 127.0.0.1:PORT until
SIGTERM/SIGINT (or SIGKILL).
"""

import json
import sys
from datetime import timedelta

from aiohttp import web
from statefun import (IntType, RequestReplyHandler, StatefulFunctions, ValueSpec, kafka_egress_message,
                      make_json_type, message_builder)

FUNCTION_TYPE = "statefun.smoke.e2e/command-interpreter-fn"
COMMANDS_TYPE = make_json_type("statefun.smoke.e2e/commands")
DISCARD_SINK = "statefun.smoke.e2e/discard-sink"
VERIFICATION_SINK = "statefun.smoke.e2e/verification-sink"

functions = StatefulFunctions()


def _integer(command, key):
    value = command.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{command.get('op')}: {key} must be an integer, got {value!r}")
    return value


def _commands_message(command):
    nested = command.get("commands")
    return message_builder(FUNCTION_TYPE, str(_integer(command, "target")),
                           value={"commands": [] if nested is None else nested}, value_type=COMMANDS_TYPE)


def _delay(command):
    # The SDK turns a timedelta into whole milliseconds with int(total_seconds() * 1000.0), which truncates
    # e.g. 1001 ms to 1000; half a millisecond more makes it exact for every delay.
    return timedelta(milliseconds=_integer(command, "delay_ms"), microseconds=500)


@functions.bind(typename=FUNCTION_TYPE, specs=[ValueSpec(name="state", type=IntType)])
def interpret(context, message):
    if not message.is_type(COMMANDS_TYPE):
        raise ValueError(f"unexpected message type {message.value_typename()}")
    self_id = context.address.id
    for command in message.as_type(COMMANDS_TYPE)["commands"]:
        op = command.get("op")
        if op == "increment":
            context.storage.state = (context.storage.state or 0) + 1
        elif op == "send":
            context.send(_commands_message(command))
        elif op == "send_after":
            token = command.get("token")
            if isinstance(token, str) and token:
                context.send_after(_delay(command), _commands_message(command), cancellation_token=token)
            else:
                context.send_after(_delay(command), _commands_message(command))
        elif op == "cancel":
            token = command.get("token")
            if not isinstance(token, str) or not token:
                raise ValueError(f"cancel: token must be a non-empty string, got {token!r}")
            context.cancel_delayed_message(token)
        elif op == "egress":
            context.send_egress(kafka_egress_message(typename=DISCARD_SINK, topic=command["topic"], key=self_id,
                                                     value="discarded-message"))
        elif op == "verify":
            record = {"id": int(self_id), "expected": _integer(command, "expected"),
                      "actual": context.storage.state or 0}
            context.send_egress(kafka_egress_message(typename=VERIFICATION_SINK, topic=command["topic"],
                                                     key=self_id, value=json.dumps(record)))
        else:
            raise ValueError(f"unknown op {op!r}")


handler = RequestReplyHandler(functions)


async def handle(request: web.Request) -> web.Response:
    try:
        reply = await handler.handle_async(await request.read())
    except Exception as error:  # the invocation fails: HTTP 500, and a line on stderr saying why
        print(f"{FUNCTION_TYPE}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return web.Response(status=500, text=f"{type(error).__name__}: {error}")
    return web.Response(body=reply, content_type="application/octet-stream")


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: interpreter.py PORT")
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_post("/statefun", handle)

    async def announce(_app):
        print(f"command interpreter (Python SDK) serving on http://127.0.0.1:{port}/statefun", file=sys.stderr,
              flush=True)

    app.on_startup.append(announce)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
