"""Savepoints made directly with SavepointWriter, for the savepoint CLI and transform tests."""

from __future__ import annotations

import json
from pathlib import Path

from pystatefun.savepoints.format import (
    DeadLetterRow,
    EgressRow,
    IdempotencyRow,
    Manifest,
    MessageRow,
    ParkedRow,
    PositionRow,
    SavepointWriter,
    SpecRow,
    StateRow,
    TimerRow,
)
from pystatefun.sdk.types import IntType, StringType
from pystatefun.wire.kafka_egress_pb2 import KafkaProducerRecord
from pystatefun.wire.request_reply_pb2 import TypedValue

COUNTER = "example/counter"
CART = "example/cart"
CREATED_MS = 1_700_000_000_000


def typed(typename: str, value: bytes) -> bytes:
    return TypedValue(typename=typename, has_value=True, value=value).SerializeToString()


def int_state(value: int) -> bytes:
    return typed(IntType.typename, IntType.serializer().serialize(value))


def string_state(value: str) -> bytes:
    return typed(StringType.typename, StringType.serializer().serialize(value))


def json_state(typename: str, value: object) -> bytes:
    return typed(typename, json.dumps(value).encode())


def rows(counters: int = 5, carts: int = 3) -> list:
    """An application: counters c0.. with an int "count" (c0 also a string "seen", expiring), carts with a
    JSON "items", one address with bytes that are not JSON, and one of everything else."""
    made: list = []
    for i in range(counters):
        made.append(StateRow(COUNTER, f"c{i}", "count", int_state(i * 10), None))
        if i == 0:
            made.append(StateRow(COUNTER, "c0", "seen", string_state("hello"), CREATED_MS + 60_000))
    for i in range(carts):
        made.append(StateRow(CART, f"u{i}", "items", json_state("example/Cart", {"apple": i + 1}), None))
    made.append(StateRow("example/blob", "b", "raw", typed("example/Raw", b"\xff\x00\xfe"), None))
    made += [
        MessageRow(COUNTER, "c1", None, None, typed(StringType.typename, StringType.serializer().serialize("m1"))),
        MessageRow(COUNTER, "c1", CART, "u0", typed(StringType.typename, StringType.serializer().serialize("m2"))),
        TimerRow(CREATED_MS + 5_000, COUNTER, "c2", COUNTER, "c1", "token-1", int_state(7)),
        ParkedRow(CART, "u2", "the function raised: KeyError"),
        DeadLetterRow("example/nobody", "", None, None, int_state(1), "no function type example/nobody", CREATED_MS),
        IdempotencyRow("key-1", CREATED_MS + 3_600_000, 200, b'{"ok": true}', "application/json", "digest"),
        SpecRow(COUNTER, "count", IntType.typename, 0, 0),
        SpecRow(COUNTER, "seen", StringType.typename, 0, 60_000),
        SpecRow(CART, "items", "example/Cart", 0, 0),
        PositionRow("example/in", "input", 0, 42),
        EgressRow("example/out", "output", KafkaProducerRecord(topic="output", value_bytes=b"record-1").SerializeToString(), "kafka"),
    ]
    return made


def write(path: Path, made: list | None = None, **manifest: object) -> Manifest:
    writer = SavepointWriter(path)
    writer.write(rows() if made is None else made)
    options = dict(application="shop", source_backend="embedded", partitions=8, mode="online",
                   created_ms=CREATED_MS)
    options.update(manifest)
    return writer.finish(**options)
