"""A chain of hops between embedded functions: count, then pass ``n - 1`` on to the next address of a
ring of 1,000. A hundred chains keep the runtime busy with its own work for seconds, none of it waiting
on anything outside the process."""

from pystatefun import IntType, StatefulFunctions, ValueSpec, message_builder

RING = 1000

functions = StatefulFunctions()


@functions.bind("bench/hop", specs=[ValueSpec("count", IntType)])
def hop(context, message):
    context.storage.count = (context.storage.count or 0) + 1
    hops_left = message.as_int()
    if hops_left > 0:
        next_id = str((int(context.address.id) + 1) % RING)
        context.send(message_builder("bench/hop", next_id, int_value=hops_left - 1))
