"""Counts the records of each key that reach it through a Kafka ingress and writes every new count to a
Kafka egress, keyed like the record: the exactly-once checks read each key's counts back as 1..n."""

from pystatefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message

functions = StatefulFunctions()


@functions.bind("kc/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    topic = message.raw_value().decode()  # each record names the topic its count goes to
    context.send_egress(kafka_egress_message(typename="kc/out", topic=topic, key=context.address.id, value=str(count)))
