"""The functions of bench/ingress_latency.py. ``bench/echo`` passes each message on to the egress, and
answers a waiting request with the same value; ``bench/tally`` does the same after counting the
messages of its address in state, so that every epoch it runs in has state to write to disk."""

from pystatefun import IntType, StatefulFunctions, ValueSpec, egress_message_builder, make_json_type

RECORD = make_json_type("io.statefun.playground/EgressRecord")

functions = StatefulFunctions()


@functions.bind("bench/echo")
def echo(context, message):
    text = message.as_string()
    if context.caller is not None:
        context.reply(str_value=text)
    else:
        context.send_egress(egress_message_builder("io.statefun.playground/egress", {"topic": "out", "payload": text}, RECORD))


@functions.bind("bench/tally", specs=[ValueSpec(name="seen", type=IntType)])
def tally(context, message):
    context.storage.seen = (context.storage.seen or 0) + 1
    echo(context, message)
