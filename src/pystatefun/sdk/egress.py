"""Records for the generic Kafka and Kinesis egresses, encoded as the official SDKs encode them."""

from __future__ import annotations

import struct
import typing

from pystatefun.sdk.messages import EgressMessage
from pystatefun.sdk.types import Type
from pystatefun.wire.kafka_egress_pb2 import KafkaProducerRecord
from pystatefun.wire.kinesis_egress_pb2 import KinesisEgressRecord
from pystatefun.wire.request_reply_pb2 import TypedValue

KAFKA_PRODUCER_RECORD_TYPENAME = "type.googleapis.com/io.statefun.sdk.egress.KafkaProducerRecord"
KINESIS_EGRESS_RECORD_TYPENAME = "type.googleapis.com/io.statefun.sdk.egress.KinesisEgressRecord"


def _value_bytes(value: typing.Any, value_type: Type | None, numbers: bool) -> bytes:
    if value_type:
        return value_type.serializer().serialize(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if numbers and isinstance(value, int):
        return struct.pack(">i", value)  # Kafka's IntegerSerializer
    if numbers and isinstance(value, float):
        return struct.pack(">d", value)  # Kafka's DoubleSerializer
    accepted = "str, bytes, int or float" if numbers else "str or bytes"
    raise TypeError(
        f"Unable to convert value to bytes: got {type(value).__qualname__}; pass {accepted}, or a value_type"
    )


def kafka_egress_message(
    typename: str,
    topic: str,
    value: str | bytes | bytearray | int | float | typing.Any,
    value_type: Type | None = None,
    key: str | None = None,
) -> EgressMessage:
    """Builds a record for the Kafka egress ``typename``, to be produced to ``topic``.

    The value is serialized with ``value_type`` if given; otherwise str is UTF-8, bytes are taken as they
    are, int is 4 bytes big-endian and float 8 bytes big-endian (Kafka's Integer/Double serializers).
    """
    if not topic:
        raise ValueError("A destination Kafka topic is missing")
    if value is None:
        raise ValueError("Missing value")
    record = KafkaProducerRecord(topic=topic, value_bytes=_value_bytes(value, value_type, numbers=True))
    if key is not None:
        record.key = key
    return EgressMessage(
        typename,
        TypedValue(typename=KAFKA_PRODUCER_RECORD_TYPENAME, has_value=True, value=record.SerializeToString()),
    )


def kinesis_egress_message(
    typename: str,
    stream: str,
    value: str | bytes | bytearray | typing.Any,
    partition_key: str,
    value_type: Type | None = None,
    explicit_hash_key: str | None = None,
) -> EgressMessage:
    """Builds a record for the Kinesis egress ``typename``, to be put on ``stream``."""
    if not stream:
        raise ValueError("Missing destination Kinesis stream")
    if value is None:
        raise ValueError("Missing value")
    if partition_key is None:
        raise ValueError("Missing partition key")
    record = KinesisEgressRecord(
        stream=stream,
        value_bytes=_value_bytes(value, value_type, numbers=False),
        partition_key=partition_key,
    )
    if explicit_hash_key is not None:
        record.explicit_hash_key = explicit_hash_key
    return EgressMessage(
        typename,
        TypedValue(typename=KINESIS_EGRESS_RECORD_TYPENAME, has_value=True, value=record.SerializeToString()),
    )
