"""A first function: a counter per id that answers its caller with the new count."""

from pystatefun import IntType, StatefulFunctions, ValueSpec, make_json_type

ADD = make_json_type(typename="com.example/Add")
COUNT = make_json_type(typename="com.example/Count")

functions = StatefulFunctions()


@functions.bind("com.example/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    context.storage.count = (context.storage.count or 0) + message.as_type(ADD)["amount"]
    if context.caller is not None:  # a request waiting for its answer (?wait=SECONDS)
        context.reply(value={"count": context.storage.count}, value_type=COUNT)
