"""A counter per key: each message adds one and reports the new count on the `counts` topic."""

import json

from pystatefun import IntType, StatefulFunctions, ValueSpec, egress_message_builder, make_json_type

RECORD = make_json_type("io.statefun.playground/EgressRecord")

functions = StatefulFunctions()


@functions.bind("crash/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    payload = json.dumps({"key": context.address.id, "count": count, "message": message.as_string()})
    context.send_egress(egress_message_builder("io.statefun.playground/egress", {"topic": "counts", "payload": payload}, RECORD))
