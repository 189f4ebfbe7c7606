"""Counts the records of each key that reach it through a Kinesis ingress and writes every new count,
keyed like the record, to the egress and target the record names: ``<egress typename> <target> [n]``,
a Kinesis egress (target = stream) or a Kafka egress (target = topic). A record that carries its place
``n`` among its key's records gets ``<count> <n>`` written, so that a check sees the order too: each key's
counts must read 1..n, and with places, count == place (no record lost, repeated or out of order)."""

from pystatefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message, kinesis_egress_message

functions = StatefulFunctions()


@functions.bind("kc/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    egress, target, *place = message.raw_value().decode().split()
    value = f"{count} {place[0]}" if place else str(count)
    if egress.startswith("kc/kinesis"):
        context.send_egress(kinesis_egress_message(typename=egress, stream=target, partition_key=context.address.id,
                                                   value=value))
    else:
        context.send_egress(kafka_egress_message(typename=egress, topic=target, key=context.address.id, value=value))
