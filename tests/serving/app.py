"""The functions the serving tests serve."""

from pystatefun import IntType, StatefulFunctions, ValueSpec, message_builder

functions = StatefulFunctions()


@functions.bind("test/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    context.storage.count = (context.storage.count or 0) + message.as_int()
    context.send(message_builder("test/sink", context.address.id, int_value=context.storage.count))


@functions.bind("test/async-counter", specs=[ValueSpec("count", IntType)])
async def async_counter(context, message):
    context.storage.count = (context.storage.count or 0) + 1


@functions.bind("test/failing")
def failing(context, message):
    raise RuntimeError("the function failed on purpose")
