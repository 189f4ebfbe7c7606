"""An egress record moves between a playground, a Kafka and a Kinesis egress of the same id: a savepoint
says which kind each record is, and a restore converts it to what the new application's egress keeps, or
refuses, before anything is restored, a record that the new egress could never deliver."""

from __future__ import annotations

import sqlite3

import pytest

from pystatefun.backends.embedded import SQLiteStore
from pystatefun.io.playground import EGRESS_ID
from pystatefun.savepoints import embedded
from pystatefun.savepoints.format import EgressRow, SavepointError, SavepointReader
from pystatefun.wire.kafka_egress_pb2 import KafkaProducerRecord
from pystatefun.wire.kinesis_egress_pb2 import KinesisEgressRecord


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


KINESIS_ID = "example/kinesis-out"


def kinesis_record(partition_key: str = "alice", hash_key: str = "") -> bytes:
    return KinesisEgressRecord(stream="clicks", partition_key=partition_key, value_bytes=b"7",
                               explicit_hash_key=hash_key).SerializeToString()


def data_dir_with(path, payload: bytes):
    store = SQLiteStore(path, 8)
    store.db.execute("INSERT INTO egress (seq, egress_id, topic, payload) VALUES (1, ?, 'clicks', ?)", (KINESIS_ID, payload))
    store.close()
    return path


def test_a_kinesis_record_keeps_its_kind_and_becomes_a_kafka_record_where_the_egress_is_kafka(tmp_path):
    embedded.take_offline(data_dir_with(tmp_path / "kinesis", kinesis_record(hash_key="42")),
                          str(tmp_path / "a.savepoint"), kinds={KINESIS_ID: "kinesis"})
    with SavepointReader(tmp_path / "a.savepoint") as reader:
        assert list(reader.rows("egress")) == [EgressRow(KINESIS_ID, "clicks", kinesis_record(hash_key="42"), "kinesis")]

    embedded.restore(str(tmp_path / "a.savepoint"), tmp_path / "same", kinds={KINESIS_ID: "kinesis"})
    assert egress_rows(tmp_path / "same") == [(KINESIS_ID, "clicks", kinesis_record(hash_key="42"))]
    # a Kafka egress of that id: partition key -> key, stream -> topic (the explicit hash key has no place)
    embedded.restore(str(tmp_path / "a.savepoint"), tmp_path / "kafka", kinds={KINESIS_ID: "kafka"})
    ((_, _, payload),) = egress_rows(tmp_path / "kafka")
    assert KafkaProducerRecord.FromString(payload) == KafkaProducerRecord(topic="clicks", key="alice", value_bytes=b"7")


def test_a_savepoint_taken_without_the_module_gives_a_kinesis_egress_its_records_back(tmp_path):
    """Without the module a take cannot know the egress's kind and calls its records Kafka ones; restored
    where the egress is a Kinesis one, each is the record it was, explicit hash key and all."""
    embedded.take_offline(data_dir_with(tmp_path / "kinesis", kinesis_record(hash_key="42")), str(tmp_path / "a.savepoint"))
    with SavepointReader(tmp_path / "a.savepoint") as reader:
        assert [row.kind for row in reader.rows("egress")] == ["kafka"]
    embedded.restore(str(tmp_path / "a.savepoint"), tmp_path / "back", kinds={KINESIS_ID: "kinesis"})
    assert egress_rows(tmp_path / "back") == [(KINESIS_ID, "clicks", kinesis_record(hash_key="42"))]


def test_records_a_kinesis_egress_cannot_put_are_refused_before_anything_is_restored(tmp_path):
    embedded.take_offline(data_dir_with(tmp_path / "nokey", KafkaProducerRecord(topic="clicks", value_bytes=b"7")
                                        .SerializeToString()), str(tmp_path / "a.savepoint"))
    with pytest.raises(SavepointError, match="cannot put .*needs a partition key"):
        embedded.restore(str(tmp_path / "a.savepoint"), tmp_path / "kinesis", kinds={KINESIS_ID: "kinesis"})
    assert not (tmp_path / "kinesis" / "pystatefun.db").exists()
    store = SQLiteStore(tmp_path / "playground", 8)
    store.db.execute("INSERT INTO egress (seq, egress_id, topic, payload) VALUES (1, ?, 'greetings', ?)",
                     (EGRESS_ID, b"Welcome Bob"))
    store.close()
    embedded.take_offline(tmp_path / "playground", str(tmp_path / "b.savepoint"))
    with pytest.raises(SavepointError, match="playground records .* Kinesis egress, whose records need a partition key"):
        embedded.restore(str(tmp_path / "b.savepoint"), tmp_path / "to-kinesis", kinds={EGRESS_ID: "kinesis"})
