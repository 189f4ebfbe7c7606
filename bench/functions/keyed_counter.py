"""The keyed counter of bench/keyed_counter.py, for pystatefun: add the message to the key's count and
answer the caller (the waiting ingress request) with the new count."""

from pystatefun import IntType, StatefulFunctions, ValueSpec

functions = StatefulFunctions()


@functions.bind("bench/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    context.storage.count = (context.storage.count or 0) + message.as_int()
    context.reply(int_value=context.storage.count)
