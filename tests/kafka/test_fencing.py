"""A worker's transactional producers fenced while it runs (another worker saw it leave as it restarted,
and fenced it then: worker.py _fence_departed) are made again once, and the epoch commits; fenced a
second time, the commit fails and says so. A real broker; the fencing is the one a worker does to a
departed worker (store.fence), done here between two commits."""

from __future__ import annotations

import asyncio
import logging

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from kafka.harness import unique
from pystatefun.backends.kafka import records
from pystatefun.backends.kafka.store import KafkaStore, fence
from pystatefun.backends.kafka.topics import prepare_topics
from pystatefun.runtime.envelope import Envelope, address, partition_of
from pystatefun.runtime.epoch import Epoch
from pystatefun.wire.request_reply_pb2 import TypedValue

PARTITIONS = 2


def committed_messages(bootstrap: str, topic: str) -> list[str]:
    """The values of the committed messages on ``topic`` (read_committed), in no particular order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        values: list[str] = []
        idle = 0
        while idle < 3:  # a few empty polls after the last record: the topic is read to its end
            batch = consumer.consume(100, 2.0)
            idle = 0 if batch else idle + 1
            values += [records.decode_message(m.value()).value.value.decode() for m in batch if m.error() is None]
        return values
    finally:
        consumer.close()


def test_a_fenced_worker_makes_its_producers_again_once_and_commits(kafka_bootstrap, caplog):
    common = {"bootstrap.servers": kafka_bootstrap}
    app, instance = unique("app"), unique("pystatefun-worker")
    topics = prepare_topics(AdminClient(common), app, PARTITIONS)
    store = KafkaStore(topics, common, {"transactional.id": instance})

    def place(id: str) -> int:
        return partition_of(id, PARTITIONS)

    seq = iter(range(1_000_000))

    async def commit(number: int) -> None:
        """Commits an epoch of five messages, written as volatile ones are: with delivery callbacks (a
        fenced producer raises its error from inside flush() while it calls them: store.kafka_error)."""
        epoch = Epoch(number)
        for n in range(5):
            value = TypedValue(typename="io.statefun.types/string", has_value=True, value=f"e{number}-{n}".encode())
            envelope = Envelope(address("test/f", f"k{n}"), None, value, seq=next(seq))
            epoch.volatile[envelope] = None
        store.commit(epoch, place)

    try:
        asyncio.run(commit(1))
        fence(common, instance)
        with caplog.at_level(logging.WARNING, logger="pystatefun.kafka"):
            asyncio.run(commit(2))  # made again, once
        assert "producers were fenced" in caplog.text
        fence(common, instance)
        with pytest.raises(KafkaException) as raised:  # a second fencing: two processes share this --worker-id
            asyncio.run(commit(3))
        assert raised.value.args[0].code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                              KafkaError.INVALID_PRODUCER_EPOCH)
        with pytest.raises(RuntimeError, match="an earlier epoch commit failed"):
            asyncio.run(commit(4))
    finally:
        store.close()
    assert sorted(committed_messages(kafka_bootstrap, topics.messages)) == sorted(
        [f"e1-{n}" for n in range(5)] + [f"e2-{n}" for n in range(5)])
