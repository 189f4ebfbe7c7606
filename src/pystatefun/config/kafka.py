"""``io.statefun.kafka.v1/ingress`` and ``io.statefun.kafka.v1/egress`` (spec §3.4), every key checked."""

from __future__ import annotations

import types
import typing
from datetime import timedelta

from pystatefun.config.model import (
    MAX_KAFKA_OFFSET,
    MAX_TIMEOUT,
    KafkaBadRecords,
    KafkaDeliverySemantic,
    KafkaEgress,
    KafkaIngress,
    KafkaStartupPosition,
    Routing,
)
from pystatefun.config.reader import (
    Context,
    Fields,
    Invalid,
    Node,
    Reported,
    choice,
    describe,
    duration,
    integer,
    properties,
    string,
    typename,
)
from pystatefun.config.routing import bad_records_parser, routings, startup_date

_STARTUP_TYPES = ("group-offsets", "earliest", "latest", "specific-offsets", "date")
_Reset = typing.Literal["earliest", "latest"]


def parse_kafka_ingress(fields: Fields, ctx: Context) -> KafkaIngress:
    ingress_id = fields.required("id", typename, example="com.example/names")
    address = fields.optional("address", string, None)
    group_id = fields.optional("consumerGroupId", string, None)
    topics = fields.required("topics", _topics, example="[{topic: names, valueType: com.example/Name, targets: [com.example/greeter]}]")
    reset = typing.cast(_Reset, fields.optional("autoOffsetResetPosition", choice("earliest", "latest", case_sensitive=False), "latest"))
    startup = fields.optional("startupPosition", _startup_position, KafkaStartupPosition())
    bad_records = fields.optional("badRecords", bad_records_parser(KafkaBadRecords, "dead-letter-topic", "topic",
                                                                   "my-app.dead-letters"), KafkaBadRecords())
    props: dict[str, str] = fields.optional("properties", properties, {})
    fields.finish()

    address = address or props.get("bootstrap.servers")
    group_id = group_id or props.get("group.id")
    if address is None and fields.valid:
        fields.node.report("no Kafka bootstrap servers: set 'address' (e.g. address: kafka:9092) or a 'bootstrap.servers' property")
    if group_id is None and fields.valid:
        fields.node.report("no consumer group: set 'consumerGroupId' (e.g. consumerGroupId: my-app) or a 'group.id' property")
    if startup.offsets and topics:
        known = {topic.source for topic in topics}
        for topic, partition in startup.offsets:
            if topic not in known:
                fields.node.child("startupPosition", None).child("offsets", None).report(
                    f"offset given for '{topic}/{partition}', but this ingress does not read topic {topic!r}: "
                    "fix the topic name or drop the offset"
                )
    if ingress_id is None or topics is None or address is None or group_id is None:
        raise Reported
    return KafkaIngress(
        id=ingress_id,
        address=address,
        consumer_group_id=group_id,
        topics=topics,
        auto_offset_reset_position=reset,
        startup_position=startup,
        bad_records=bad_records,
        properties=types.MappingProxyType(props),
        origin=ctx.origin,
    )


def _topics(node: Node) -> tuple[Routing, ...]:
    return routings(node, "topic")


def _startup_position(node: Node) -> KafkaStartupPosition:
    fields = Fields(node)
    if not fields.valid:
        raise Reported
    kind = fields.required("type", choice(*_STARTUP_TYPES), example="earliest")
    if kind is None:
        fields.allow("offsets", "date")
    offsets = date = None
    if kind == "specific-offsets":
        offsets = fields.required("offsets", _offsets, example='[{"names/0": 42}]')
    elif kind == "date":
        date = fields.required("date", startup_date, example="'2020-02-01 04:15:00.000 +0000'")
    fields.finish(hints={"offsets": "only with type: specific-offsets", "date": "only with type: date"})
    if kind is None or (kind == "specific-offsets" and offsets is None) or (kind == "date" and date is None):
        raise Reported
    return KafkaStartupPosition(type=kind, offsets=offsets, date=date)  # type: ignore[arg-type]


def _offsets(node: Node) -> types.MappingProxyType:
    """``- "<topic>/<partition>": <offset>`` entries."""
    if not isinstance(node.value, list) or not node.value:
        raise Invalid(f"expected a non-empty list of single-key maps like '- \"names/0\": 42', got {describe(node.value)}")
    offsets: dict[tuple[str, int], int] = {}
    for index, entry in enumerate(node.value):
        item = node.child(index, entry)
        if not isinstance(entry, dict) or len(entry) != 1:
            item.report('expected a single-key map like \'- "names/0": 42\' (topic/partition: offset)')
            continue
        ((key, value),) = entry.items()
        topic, sep, partition = str(key).rpartition("/")
        if not sep or not topic or not partition.isdigit():
            item.report(f"{key!r} is not '<topic>/<partition>', e.g. 'names/0'")
            continue
        offset = item.child(str(key), value).parse(integer(0, MAX_KAFKA_OFFSET))
        if offset is None:
            continue
        if (topic, int(partition)) in offsets:
            item.report(f"an offset for {key!r} is given twice")
        offsets[(topic, int(partition))] = offset
    return types.MappingProxyType(offsets)


def parse_kafka_egress(fields: Fields, ctx: Context) -> KafkaEgress:
    egress_id = fields.required("id", typename, example="com.example/greets")
    address = fields.optional("address", string, None)
    semantic = fields.optional("deliverySemantic", _delivery_semantic, KafkaDeliverySemantic())
    props: dict[str, str] = fields.optional("properties", properties, {})
    fields.finish()
    address = address or props.get("bootstrap.servers")
    if address is None and fields.valid:
        fields.node.report("no Kafka bootstrap servers: set 'address' (e.g. address: kafka:9092) or a 'bootstrap.servers' property")
    if egress_id is None or address is None:
        raise Reported
    return KafkaEgress(
        id=egress_id,
        address=address,
        delivery_semantic=semantic,
        properties=types.MappingProxyType(props),
        origin=ctx.origin,
    )


def _transaction_timeout_millis(node: Node) -> timedelta:
    try:
        return timedelta(milliseconds=integer(1, MAX_TIMEOUT // timedelta(milliseconds=1))(node))
    except Invalid as e:
        raise Invalid(f"{e}; transactionTimeoutMillis is a number of milliseconds (for a duration like '15min' use transactionTimeout)") from None


def _delivery_semantic(node: Node) -> KafkaDeliverySemantic:
    fields = Fields(node)
    if not fields.valid:
        raise Reported
    kind = fields.required("type", choice("at-least-once", "exactly-once", "none"), example="exactly-once")
    if kind is None:
        fields.allow("transactionTimeout", "transactionTimeoutMillis")
    timeout = None
    if kind == "exactly-once":
        # StateFun prefers the deprecated millis key when both are given
        timeout = fields.optional("transactionTimeoutMillis", _transaction_timeout_millis, None)
        given = fields.optional("transactionTimeout", duration(MAX_TIMEOUT, positive=True), None)
        timeout = timeout or given
        if timeout is None and not fields.has("transactionTimeoutMillis") and not fields.has("transactionTimeout"):
            fields.node.report("exactly-once needs a transaction timeout: set transactionTimeout (e.g. transactionTimeout: 15min)")
    only = "only with type: exactly-once"
    fields.finish(hints={"transactionTimeout": only, "transactionTimeoutMillis": only})
    if kind is None or (kind == "exactly-once" and timeout is None):
        raise Reported
    return KafkaDeliverySemantic(type=kind, transaction_timeout=timeout)  # type: ignore[arg-type]
