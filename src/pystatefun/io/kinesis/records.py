"""Kinesis egress records as functions emit them (``KinesisEgressRecord``): what Kinesis takes of them,
checked when they are emitted, and their ``PutRecords`` entries. No AWS client here: savepoints check the
records they restore with the same rules (savepoints/format.py)."""

from __future__ import annotations

import re
import typing

from google.protobuf.message import DecodeError

from pystatefun.sdk.egress import KINESIS_EGRESS_RECORD_TYPENAME
from pystatefun.wire.kinesis_egress_pb2 import KinesisEgressRecord
from pystatefun.wire.request_reply_pb2 import TypedValue

RECORD_MAX_BYTES = 1024 * 1024  # data and partition key of one record (Kinesis' limit)
MAX_HASH_KEY = 2**128 - 1
# what Kinesis takes (its API reference): a record that breaks them would be refused with the whole batch,
# again and again, so it is refused when it is emitted instead (a dead letter with the reason)
HASH_KEY = re.compile(r"0|[1-9][0-9]{0,38}")
STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
RECORD_ID_PREFIX = b"pystatefun-id:"


def check_record(value: TypedValue) -> KinesisEgressRecord:
    """The record a function emitted, or ValueError saying what is wrong with it (it becomes a dead letter)."""
    if value.typename != KINESIS_EGRESS_RECORD_TYPENAME:
        raise ValueError(f"a Kinesis egress takes {KINESIS_EGRESS_RECORD_TYPENAME} values (kinesis_egress_message(...) "
                         f"in the SDKs), got {value.typename!r}")
    try:
        record = KinesisEgressRecord.FromString(value.value)
    except DecodeError as e:
        raise ValueError(f"not a KinesisEgressRecord: {e}") from None
    return check_fields(record)


def check_fields(record: KinesisEgressRecord) -> KinesisEgressRecord:
    """``record`` if Kinesis takes it, or ValueError saying what is wrong with it."""
    if not record.stream:
        raise ValueError("a KinesisEgressRecord needs a stream")
    if not STREAM_NAME.fullmatch(record.stream):
        raise ValueError(f"stream {record.stream!r} is not a Kinesis stream name (1 to 128 of a-z, A-Z, 0-9, _ . -)")
    if not record.partition_key:
        raise ValueError("a KinesisEgressRecord needs a partition key (1 to 256 characters)")
    if len(record.partition_key) > 256:
        raise ValueError(f"the partition key is {len(record.partition_key)} characters long; Kinesis takes at most 256")
    size = len(record.value_bytes) + len(record.partition_key.encode())
    if size > RECORD_MAX_BYTES:
        raise ValueError(f"the record is {size} bytes (data and partition key); Kinesis takes at most {RECORD_MAX_BYTES}")
    if record.explicit_hash_key and not (HASH_KEY.fullmatch(record.explicit_hash_key)
                                         and int(record.explicit_hash_key) <= MAX_HASH_KEY):
        raise ValueError(f"explicit hash key {record.explicit_hash_key!r} is not a whole number from 0 to 2^128 - 1")
    return record


def put_entry(record: KinesisEgressRecord, record_id: str | None) -> dict[str, typing.Any]:
    """The PutRecords entry of a record: the explicit hash key only when it is not empty (as StateFun)."""
    data = record.value_bytes if record_id is None else RECORD_ID_PREFIX + record_id.encode() + b"\n" + record.value_bytes
    entry: dict[str, typing.Any] = {"Data": data, "PartitionKey": record.partition_key}
    if record.explicit_hash_key:
        entry["ExplicitHashKey"] = record.explicit_hash_key
    return entry
