"""The function of bench/ingress_latency.py: passes each message on to the egress, and answers a
waiting request with the same value."""

from pystatefun import StatefulFunctions, egress_message_builder, make_json_type

RECORD = make_json_type("io.statefun.playground/EgressRecord")

functions = StatefulFunctions()


@functions.bind("bench/echo")
def echo(context, message):
    text = message.as_string()
    if context.caller is not None:
        context.reply(str_value=text)
    else:
        context.send_egress(egress_message_builder("io.statefun.playground/egress", {"topic": "out", "payload": text}, RECORD))
