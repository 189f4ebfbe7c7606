"""Counts the records of each key that reach it through a Kinesis ingress and writes every new count,
keyed like the record, to the egress and stream the record names (``<egress typename> <target>``): a
Kinesis egress (target = stream) or a Kafka egress (target = topic). The exactly-once checks read each
key's counts back as 1..n."""

from pystatefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message, kinesis_egress_message

functions = StatefulFunctions()


@functions.bind("kc/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    egress, target = message.raw_value().decode().split()
    if egress.startswith("kc/kinesis"):
        context.send_egress(kinesis_egress_message(typename=egress, stream=target, partition_key=context.address.id,
                                                   value=str(count)))
    else:
        context.send_egress(kafka_egress_message(typename=egress, topic=target, key=context.address.id, value=str(count)))
