"""The development Kafka (tests/support/kafka.py) behaves like the real thing the runtime relies on: topics
with partitions, keyed records, transactions hidden from read_committed consumers until committed, and a
three-node cluster that keeps accepting acks=all writes with a node down and takes the node back."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from support.kafka import KafkaCluster

from .harness import wait_until


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_topic(bootstrap: str, partitions: int, replica_assignment: list[list[int]] | None = None) -> str:
    """A new topic (the brokers do not create topics on first use), once every partition has a leader.
    Without `replica_assignment` its replication factor is the broker's default."""
    topic = unique("topic")
    new_topic = (NewTopic(topic, num_partitions=partitions, replica_assignment=replica_assignment) if replica_assignment
                 else NewTopic(topic, num_partitions=partitions))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([new_topic], operation_timeout=30)[topic].result(timeout=30)

    def led() -> bool:
        found = admin.list_topics(topic, timeout=5).topics[topic]
        return found.error is None and len(found.partitions) == partitions and all(
            p.leader >= 0 for p in found.partitions.values())

    wait_until(led, f"topic {topic} has leaders")
    return topic


def produce(producer: Producer, topic: str, records: list[tuple[str | None, str]]) -> list[Message]:
    """Produces and flushes `records` (key, value); returns the delivery reports, failed ones included."""
    reports: list[Message] = []
    for key, value in records:
        producer.produce(topic, value=value, key=key, on_delivery=lambda error, message: reports.append(message))
    assert producer.flush(30) == 0, "records still undelivered after 30 s"
    return reports


def consume(bootstrap: str, topic: str, count: int, *, isolation: str = "read_committed",
            partitions: int | None = None, linger: float = 0.0, timeout: float = 30.0) -> list[Message]:
    """`count` records of `topic`, then whatever else arrives within `linger` seconds. A consumer group
    (subscribe) unless `partitions` is given: then it reads those partitions from the start (assign)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("group"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": isolation})
    try:
        if partitions is None:
            consumer.subscribe([topic])
        else:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        received: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            received += _records(consumer.consume(count - len(received), timeout=0.5))
        assert len(received) >= count, f"{len(received)} of {count} records within {timeout:.0f}s"
        linger_end = time.monotonic() + linger
        while time.monotonic() < linger_end:
            received += _records(consumer.consume(100, timeout=0.2))
        return received
    finally:
        consumer.close()


def _records(messages: list[Message]) -> list[Message]:
    for message in messages:
        if message.error() is not None and message.error().code() != KafkaError._PARTITION_EOF:
            raise AssertionError(f"consumer error: {message.error()}")
    return [m for m in messages if m.error() is None]


def test_keyed_records_keep_their_partition_and_order(kafka_bootstrap: str) -> None:
    topic = create_topic(kafka_bootstrap, partitions=4)
    records = [(f"key-{k}", f"{k}:{i}") for i in range(10) for k in range(10)]
    reports = produce(Producer({"bootstrap.servers": kafka_bootstrap}), topic, records)
    assert [r.error() for r in reports if r.error() is not None] == []

    received = consume(kafka_bootstrap, topic, len(records))
    partition_of: dict[str, set[int]] = {}
    values_of: dict[str, list[str]] = {}
    for message in received:
        key = message.key().decode()
        partition_of.setdefault(key, set()).add(message.partition())
        values_of.setdefault(key, []).append(message.value().decode())
    assert all(len(p) == 1 for p in partition_of.values()), partition_of
    assert len(set().union(*partition_of.values())) > 1, "all keys landed in one partition"
    assert values_of == {f"key-{k}": [f"{k}:{i}" for i in range(10)] for k in range(10)}


def test_aborted_transaction_is_invisible_and_committed_one_visible_once(kafka_bootstrap: str) -> None:
    topic = create_topic(kafka_bootstrap, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": unique("transaction")})
    producer.init_transactions(30)
    producer.begin_transaction()
    produce(producer, topic, [(None, f"aborted-{i}") for i in range(3)])
    producer.abort_transaction(30)
    producer.begin_transaction()
    produce(producer, topic, [(None, f"committed-{i}") for i in range(3)])
    producer.commit_transaction(30)

    # One partition: the aborted records come before the committed ones, so a read_committed consumer
    # would have had them by the time it has the last committed one; lingering catches any duplicate.
    committed = consume(kafka_bootstrap, topic, 3, partitions=1, linger=1.0)
    assert [m.value().decode() for m in committed] == [f"committed-{i}" for i in range(3)]
    # The aborted records were written all the same: read_uncommitted shows them.
    everything = consume(kafka_bootstrap, topic, 6, partitions=1, isolation="read_uncommitted")
    assert [m.value().decode() for m in everything] == [f"aborted-{i}" for i in range(3)] + [
        f"committed-{i}" for i in range(3)]


def partitions_of(admin: AdminClient, topic: str, count: int) -> dict:
    """A topic's partitions in the metadata, once it lists all ``count`` of them: the brokers of a cluster
    learn of a new topic one after another, and a client may ask one that does not know it yet."""
    listed = {}

    def complete() -> bool:
        nonlocal listed
        listed = admin.list_topics(topic, timeout=5).topics[topic].partitions
        return len(listed) == count

    wait_until(complete, f"the {count} partitions of {topic} in the metadata")
    return listed


def in_sync_replicas(admin: AdminClient, topic: str) -> dict[int, list[int]]:
    return {p.id: sorted(p.isrs) for p in admin.list_topics(topic, timeout=5).topics[topic].partitions.values()}


def test_three_nodes_take_acks_all_writes_with_one_node_down_and_it_rejoins(kafka_cluster3: KafkaCluster) -> None:
    bootstrap = kafka_cluster3.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = create_topic(bootstrap, partitions=2)
    partitions = partitions_of(admin, topic, 2)
    assert {p.id: len(p.replicas) for p in partitions.values()} == {0: 3, 1: 3}
    wait_until(lambda: in_sync_replicas(admin, topic) == {0: [1, 2, 3], 1: [1, 2, 3]}, "all replicas in sync")

    stopped = partitions[0].leader  # the leader's going forces a leader election too
    survivors = sorted({1, 2, 3} - {stopped})
    # Two replicas only, one of them on the node about to stop: with it gone, one in-sync replica is
    # fewer than min.insync.replicas (2), which acks=all writes must then be refused for.
    fragile = create_topic(bootstrap, partitions=1, replica_assignment=[[stopped, survivors[0]]])
    kafka_cluster3.stop_node(stopped - 1)

    wait_until(lambda: set(admin.list_topics(timeout=5).brokers) == set(survivors), "the stopped broker is gone")
    records = [(f"key-{i}", f"value-{i}") for i in range(20)]
    reports = produce(Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True}),
                      topic, records)
    assert [r.error() for r in reports if r.error() is not None] == []
    wait_until(lambda: in_sync_replicas(admin, topic) == {0: survivors, 1: survivors},
               "the stopped node is out of every in-sync replica list")
    refused = produce(Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0}),
                      fragile, [(None, "refused")])
    assert refused[0].error() is not None
    assert refused[0].error().code() == KafkaError.NOT_ENOUGH_REPLICAS, refused[0].error()

    kafka_cluster3.start_node(stopped - 1)
    assert set(admin.list_topics(timeout=5).brokers) == {1, 2, 3}
    wait_until(lambda: in_sync_replicas(admin, topic) == {0: [1, 2, 3], 1: [1, 2, 3]},
               "the restarted node caught up and is back in sync")
    received = consume(bootstrap, topic, len(records), partitions=2, linger=0.5)
    assert sorted(m.value().decode() for m in received) == sorted(value for _, value in records)
