"""The functions the serving tests serve."""

import time

from pystatefun import IntType, StatefulFunctions, ValueSpec, message_builder

SECRET = "password=hunter2"  # what a function's exception message may hold; must never reach the caller
SLOW_MS = 2500  # a slow call of test/slow

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
    raise RuntimeError(f"the function failed on purpose, connecting with {SECRET}")


@functions.bind("test/slow")
def slow(context, message):
    # a synchronous function blocking, as one calling a slow database does, for the message's milliseconds
    time.sleep(message.as_int() / 1000)
