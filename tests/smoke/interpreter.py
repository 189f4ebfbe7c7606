"""The smoke test's command interpreter on the pystatefun SDK (compat/interpreter/README.md).

Embedded (``pystatefun.v1/embedded``, module ``tests.smoke.interpreter:functions``) or remote
(``pystatefun serve tests.smoke.interpreter:functions --port PORT``). It uses only names the official
Python SDK has as well, so the same source also runs on it (tests/e2e/official_server.py aliases
``pystatefun`` to ``statefun``).
"""

import json
from datetime import timedelta

from pystatefun import (
    IntType,
    StatefulFunctions,
    ValueSpec,
    kafka_egress_message,
    make_json_type,
    message_builder,
)

FUNCTION = "statefun.smoke.e2e/command-interpreter-fn"
COMMANDS = make_json_type("statefun.smoke.e2e/commands")
DISCARD = "statefun.smoke.e2e/discard-sink"
VERIFICATION = "statefun.smoke.e2e/verification-sink"

functions = StatefulFunctions()


def _message(target: int, commands: list):
    return message_builder(target_typename=FUNCTION, target_id=str(target), value={"commands": commands},
                           value_type=COMMANDS)


@functions.bind(FUNCTION, specs=[ValueSpec("state", IntType)])
def interpret(context, message):
    if message.value_typename() != COMMANDS.typename:
        raise ValueError(f"unexpected message type {message.value_typename()}")
    for command in json.loads(message.raw_value().decode("utf-8"))["commands"]:
        op = command["op"]
        if op == "increment":
            context.storage.state = (context.storage.state or 0) + 1
        elif op == "send":
            context.send(_message(command["target"], command["commands"]))
        elif op == "send_after":
            delay = timedelta(milliseconds=command["delay_ms"])
            token = command.get("token") or ""
            if token:
                context.send_after(delay, _message(command["target"], command["commands"]), token)
            else:
                context.send_after(delay, _message(command["target"], command["commands"]))
        elif op == "cancel":
            context.cancel_delayed_message(command["token"])
        elif op == "egress":
            context.send_egress(kafka_egress_message(typename=DISCARD, topic=command["topic"],
                                                     key=context.address.id, value="discarded-message"))
        elif op == "verify":
            result = {"id": int(context.address.id), "expected": command["expected"],
                      "actual": context.storage.state or 0}
            context.send_egress(kafka_egress_message(typename=VERIFICATION, topic=command["topic"],
                                                     key=context.address.id, value=json.dumps(result)))
        else:
            raise ValueError(f"unknown command {command!r}")
