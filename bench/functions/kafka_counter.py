"""The keyed counter of bench/kafka_backend.py, for pystatefun: count the record's key and write the
count to the egress topic the record names, with the record's send time (``TOPIC|SEND_NS``) after it."""

from pystatefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message

functions = StatefulFunctions()


@functions.bind("bench/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    topic, _, sent = message.raw_value().decode().partition("|")
    context.send_egress(kafka_egress_message(typename="bench/out", topic=topic, key=context.address.id,
                                             value=f"{count}|{sent}"))
