"""Idempotency records keep the digest of the request their key was first used for, on both backends'
storage, and a data dir made before that gets the column without losing its records."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from pystatefun.backends.embedded import SQLiteStore
from pystatefun.backends.kafka.records import PartitionState, encode_idempotency, idempotency_key
from pystatefun.runtime.epoch import Epoch, IdempotencyRecord


def record(request: str) -> IdempotencyRecord:
    return IdempotencyRecord("ingress:k", 10_000, 202, b"", "", request)


def test_the_embedded_store_keeps_the_request_digest(tmp_path: Path):
    async def scenario():
        store = SQLiteStore(tmp_path, 4)
        epoch = Epoch(1)
        epoch.idempotency.append(record("abc123"))
        store.commit(epoch, lambda id: 0)
        assert store.idempotency("ingress:k", 0).request == "abc123"
        store.close()

    asyncio.run(scenario())


def test_a_data_dir_from_before_digests_gets_the_column_and_keeps_its_records(tmp_path: Path):
    SQLiteStore(tmp_path, 4).close()
    with sqlite3.connect(tmp_path / "pystatefun.db") as db:  # the table as it was made before
        db.execute("ALTER TABLE idempotency DROP COLUMN request")
        db.execute("INSERT INTO idempotency VALUES ('ingress:old', 10000, 202, x'', '')")
    store = SQLiteStore(tmp_path, 4)
    try:
        old = store.idempotency("ingress:old", 0)
        assert (old.key, old.status, old.request) == ("ingress:old", 202, "")  # answered to any retry, as before
    finally:
        store.close()


def test_the_kafka_changelog_keeps_the_request_digest():
    state = PartitionState(0)
    state.apply(idempotency_key("ingress:k"), encode_idempotency(record("abc123")))
    assert state.idempotency["ingress:k"].request == "abc123"
