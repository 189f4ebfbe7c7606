"""An egress record moves between a playground egress and a Kafka egress of the same id: a savepoint says
which kind each record is, and a restore converts it to what the new application's egress keeps."""

from __future__ import annotations

import sqlite3

from pystatefun.backends.embedded import SQLiteStore
from pystatefun.io.playground import EGRESS_ID
from pystatefun.savepoints import embedded
from pystatefun.savepoints.format import EgressRow, SavepointReader
from pystatefun.wire.kafka_egress_pb2 import KafkaProducerRecord


def egress_rows(path) -> list[tuple]:
    db = sqlite3.connect(path / "pystatefun.db")
    try:
        return list(db.execute("SELECT egress_id, topic, payload FROM egress ORDER BY seq"))
    finally:
        db.close()


def test_a_playground_record_restored_into_a_kafka_egress_becomes_a_kafka_record_and_back(tmp_path):
    store = SQLiteStore(tmp_path / "playground", 8)
    store.db.execute("INSERT INTO egress (seq, egress_id, topic, payload) VALUES (1, ?, 'greetings', ?)",
                     (EGRESS_ID, b"Welcome Bob"))
    store.close()
    # the data dir's own module has the playground egress: its records are playground records
    embedded.take_offline(tmp_path / "playground", str(tmp_path / "a.savepoint"))
    with SavepointReader(tmp_path / "a.savepoint") as reader:
        assert list(reader.rows("egress")) == [EgressRow(EGRESS_ID, "greetings", b"Welcome Bob", "playground")]

    # restored where that id is a Kafka egress (examples/greeter/module-kafka.yaml)
    embedded.restore(str(tmp_path / "a.savepoint"), tmp_path / "kafka", kinds={EGRESS_ID: "kafka"})
    ((egress_id, topic, payload),) = egress_rows(tmp_path / "kafka")
    assert (egress_id, topic) == (EGRESS_ID, "greetings")
    assert KafkaProducerRecord.FromString(payload) == KafkaProducerRecord(topic="greetings", value_bytes=b"Welcome Bob")

    # and back: the module says that id is Kafka there, so the savepoint says so too
    embedded.take_offline(tmp_path / "kafka", str(tmp_path / "b.savepoint"), kinds={EGRESS_ID: "kafka"})
    with SavepointReader(tmp_path / "b.savepoint") as reader:
        (row,) = reader.rows("egress")
    assert row.kind == "kafka"
    embedded.restore(str(tmp_path / "b.savepoint"), tmp_path / "again", kinds={EGRESS_ID: "playground"})
    assert egress_rows(tmp_path / "again") == [(EGRESS_ID, "greetings", b"Welcome Bob")]
