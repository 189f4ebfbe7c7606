"""The counter-chain function of bench/runtime_chain.py: count, then pass the message on."""

from pystatefun import IntType, StatefulFunctions, ValueSpec, message_builder

RING = 1000  # addresses in the ring

functions = StatefulFunctions()


@functions.bind("bench/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    context.storage.count = (context.storage.count or 0) + 1
    hops_left = message.as_int()
    if hops_left > 0:
        next_id = str((int(context.address.id) + 1) % RING)
        context.send(message_builder("bench/counter", next_id, int_value=hops_left - 1))
