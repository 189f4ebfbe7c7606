"""Version 2 of the counter (examples/counter): its state is no longer an int named ``count`` but a JSON
``com.example/Tally`` named ``tally`` that also keeps the last amount added. A savepoint of version 1 is
upgraded with upgrade.py (docs/savepoints.md, "Upgrade a state's type")."""

from pystatefun import StatefulFunctions, ValueSpec, make_json_type

ADD = make_json_type(typename="com.example/Add")
COUNT = make_json_type(typename="com.example/Count")
TALLY = make_json_type(typename="com.example/Tally")

functions = StatefulFunctions()


@functions.bind("com.example/counter", specs=[ValueSpec("tally", TALLY)])
def counter(context, message):
    amount = message.as_type(ADD)["amount"]
    tally = context.storage.tally or {"count": 0}
    tally = {"count": tally["count"] + amount, "last": amount}
    context.storage.tally = tally
    if context.caller is not None:  # a request waiting for its answer (?wait=SECONDS)
        context.reply(value=tally, value_type=COUNT)
