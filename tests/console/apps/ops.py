"""Functions the console tests add beside the shopping-cart example, for what the cart never does: a
delayed message to cancel, and a function that fails until a fix is deployed, to park, resume, skip and
replay."""

import json
import os
from datetime import timedelta

from pystatefun import StatefulFunctions, egress_message_builder, make_json_type, message_builder

functions = StatefulFunctions()

RECORD = make_json_type("io.statefun.playground/EgressRecord")
REMIND = make_json_type("ops/Remind")


def emit(context, **fields) -> None:
    record = {"topic": "ops", "payload": json.dumps(fields)}
    context.send_egress(egress_message_builder("io.statefun.playground/egress", record, RECORD))


@functions.bind("ops/reminder")
def reminder(context, message):
    """{"label": L, "seconds": S}: ops/late/L hears L in S seconds, a delayed message of this address."""
    remind = message.as_type(REMIND)
    context.send_after(timedelta(seconds=remind["seconds"]), message_builder("ops/late", remind["label"], str_value=remind["label"]))


@functions.bind("ops/late")
def late(context, message):
    emit(context, key=context.address.id, message=message.as_string())


@functions.bind("ops/fragile")
def fragile(context, message):
    """Raises on "poison" until the file named by $OPS_FIXED exists (the fix is deployed)."""
    text = message.as_string()
    if text == "poison" and not os.path.exists(os.environ["OPS_FIXED"]):
        raise RuntimeError("cannot digest poison")
    emit(context, key=context.address.id, message=text)


@functions.bind("ops/refuses")
def refuses(context, message):
    """Fails on every message: each address parks, and a skip turns its message into a dead letter."""
    raise RuntimeError("refuses every message")
