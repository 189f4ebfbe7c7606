"""The function of bench/gil_handover.py's end-to-end flow: a counter chain (as chain.py) whose every
hop also sends a record to the Kafka egress ``bench/out``, so that the egress forwards while the runtime
is busy running embedded functions."""

from pystatefun import IntType, StatefulFunctions, ValueSpec, message_builder
from pystatefun.sdk.egress import kafka_egress_message

TOPIC = "bench-egress-chain"

functions = StatefulFunctions()


@functions.bind("bench/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    context.storage.count = (context.storage.count or 0) + 1
    hops_left = message.as_int()
    context.send_egress(kafka_egress_message("bench/out", TOPIC, hops_left, key=context.address.id))
    if hops_left > 0:
        ring, position = context.address.id.split("/")
        next_id = f"{ring}/{(int(position) + 1) % int(ring)}"
        context.send(message_builder("bench/counter", next_id, int_value=hops_left - 1))
