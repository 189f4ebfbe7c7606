"""The counter-chain function of bench/runtime_chain.py: count, then pass the message on.

An address's id is ``RING/POSITION``: the message goes on to the next position of a ring of RING
addresses, so one function serves rings of any size.
"""

from pystatefun import IntType, StatefulFunctions, ValueSpec, message_builder

functions = StatefulFunctions()


@functions.bind("bench/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    context.storage.count = (context.storage.count or 0) + 1
    hops_left = message.as_int()
    if hops_left > 0:
        ring, position = context.address.id.split("/")
        next_id = f"{ring}/{(int(position) + 1) % int(ring)}"
        context.send(message_builder("bench/counter", next_id, int_value=hops_left - 1))
