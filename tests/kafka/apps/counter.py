"""Counts the records of each key that reach it through a Kafka ingress and writes every new count to a
Kafka egress, keyed like the record: the exactly-once checks read each key's counts back as 1..n."""

from pystatefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message

functions = StatefulFunctions()


@functions.bind("kc/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    # each record names the topic its count goes to, and may carry its place among its key's records,
    # written back beside the count: a check then sees the order too (count == place)
    topic, *place = message.raw_value().decode().split()
    if topic == "poison":  # a record this function cannot handle: its address parks (test_kafka_io.py)
        raise RuntimeError("a poison record")
    value = f"{count} {place[0]}" if place else str(count)
    context.send_egress(kafka_egress_message(typename="kc/out", topic=topic, key=context.address.id, value=value))
