"""The crash test's application: every message goes through three kinds of effect that must each happen
once across kill -9: a state update with an egress record (counter), a message to another function
delivered in memory (total), and a delayed message on a durable timer (late)."""

import json
import os
from datetime import timedelta

from pystatefun import (
    IntType,
    StatefulFunctions,
    ValueSpec,
    egress_message_builder,
    make_json_type,
    message_builder,
    simple_type,
)

RECORD = make_json_type("io.statefun.playground/EgressRecord")

functions = StatefulFunctions()


def emit(context, topic: str, **fields) -> None:
    record = {"topic": topic, "payload": json.dumps(fields)}
    context.send_egress(egress_message_builder("io.statefun.playground/egress", record, RECORD))


@functions.bind("crash/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    message_id = message.as_string()
    emit(context, "counts", key=context.address.id, count=count, message=message_id)
    context.send(message_builder("crash/total", "all", str_value=message_id))
    context.send_after(timedelta(milliseconds=100), message_builder("crash/late", context.address.id, str_value=message_id))


@functions.bind("crash/total", specs=[ValueSpec("total", IntType)])
def total(context, message):
    context.storage.total = (context.storage.total or 0) + 1
    emit(context, "totals", total=context.storage.total, message=message.as_string())


@functions.bind("crash/late")
def late(context, message):
    emit(context, "late", key=context.address.id, message=message.as_string(), sender=context.caller.id)


@functions.bind("crash/slow-answer", specs=[ValueSpec("count", IntType)])
def slow_answer(context, message):
    """Counts, then answers its caller after ``message`` seconds (for request/reply timeouts)."""
    context.storage.count = (context.storage.count or 0) + 1
    reply = message_builder(context.caller.typename, context.caller.id, int_value=context.storage.count)
    context.send_after(timedelta(seconds=message.as_int()), reply)


@functions.bind("crash/fragile")
def fragile(context, message):
    """Raises on "poison" until the file named by $FRAGILE_FIXED exists (the fix is deployed)."""
    text = message.as_string()
    if text == "poison" and not os.path.exists(os.environ.get("FRAGILE_FIXED", "/nonexistent")):
        raise RuntimeError("cannot digest poison")
    emit(context, "fragile", key=context.address.id, message=text)


TEXT = simple_type("crash/Text", serialize_fn=str.encode, deserialize_fn=bytes.decode)


@functions.bind("crash/echo")
def echo(context, message):
    """Answers its caller with the message's text as it came, in a type of its own (not JSON)."""
    context.reply(value=message.as_string(), value_type=TEXT)
