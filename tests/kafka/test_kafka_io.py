"""Kafka ingress and egress on the embedded backend, with `pystatefun run` processes and a real broker:
records become messages once and counts reach the egress once (read_committed) across kill -9, and every
bad-record policy does what it says."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime, timezone

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from e2e.processes import Runtime

from .harness import KeyedRecords, counter_module, counts_by_key, create_topics, produce, read_all, unique



def test_records_are_counted_once_and_counts_reach_kafka_once_across_kill_9(tmp_path, kafka_bootstrap):
    source, out = unique("in"), unique("out")
    create_topics(kafka_bootstrap, source, out)
    runtime = Runtime(counter_module(tmp_path / "app", kafka_bootstrap, source, playground=True), tmp_path / "data")
    records = KeyedRecords(kafka_bootstrap, source, out, keys=20, seed=7)
    records.send(500)
    runtime.start()
    try:
        for _ in range(4):
            records.send(750)
            time.sleep(records.rng.uniform(0.05, 0.6))  # somewhere in reading, processing and forwarding
            runtime.kill()
            runtime.start()
        records.check(timeout=60)
    finally:
        runtime.stop()


def test_a_restarted_runtime_continues_after_the_last_committed_record(tmp_path, kafka_bootstrap):
    source, out = unique("in"), unique("out")
    create_topics(kafka_bootstrap, source, out)
    runtime = Runtime(counter_module(tmp_path / "app", kafka_bootstrap, source, playground=True), tmp_path / "data")
    produce(kafka_bootstrap, source, [(b"a", out.encode())] * 3)
    runtime.start()
    try:
        assert len(read_all(kafka_bootstrap, out, 3)) == 3
        runtime.stop()  # a clean stop, then more records while it is down
        produce(kafka_bootstrap, source, [(b"a", out.encode())] * 2)
        runtime.start()
        assert counts_by_key(read_all(kafka_bootstrap, out, 5))["a"] == [1, 2, 3, 4, 5]
    finally:
        runtime.stop()


def test_a_parked_address_does_not_hold_up_the_ingress(tmp_path, kafka_bootstrap):
    """A key whose first record parks its address, and then far more records for it than a backlog holds
    (1,000): the ingress goes on with the other keys behind them in the same partition, and the parked
    address keeps every one of its records (on disk) for when it is resumed."""
    source, out = unique("in"), unique("out")
    create_topics(kafka_bootstrap, source, out, partitions=1)
    runtime = Runtime(counter_module(tmp_path / "app", kafka_bootstrap, source, playground=True), tmp_path / "data")
    produce(kafka_bootstrap, source, [(b"stuck", b"poison")] + [(b"stuck", out.encode())] * 2500
            + [(f"k{n % 10}".encode(), out.encode()) for n in range(100)])
    runtime.start()
    try:
        counts = counts_by_key(read_all(kafka_bootstrap, out, 100))
        assert counts == {f"k{n}": list(range(1, 11)) for n in range(10)}
        parked = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{runtime.admin_port}/parked", timeout=30).read())
        assert [(p["address"], p["waiting_messages"]) for p in parked] == [("kc/counter/stuck", 2501)]
    finally:
        runtime.stop()


BAD = [
    (None, "the record has no key"),
    (b"\xff\xfe", "the record key is not UTF-8 text"),
]


@pytest.mark.parametrize("key, reason", BAD, ids=["no-key", "key-not-utf8"])
def test_bad_records_skip_policy_counts_and_goes_past_them(tmp_path, kafka_bootstrap, key, reason):
    source, out = unique("in"), unique("out")
    create_topics(kafka_bootstrap, source, out, partitions=1)
    policy = "  badRecords:\n    type: skip"
    runtime = Runtime(counter_module(tmp_path / "app", kafka_bootstrap, source, bad_records=policy, playground=True), tmp_path / "data")
    produce(kafka_bootstrap, source, [(b"a", out.encode()), (key, out.encode()), (b"a", out.encode())])
    runtime.start()
    try:
        assert counts_by_key(read_all(kafka_bootstrap, out, 2))["a"] == [1, 2]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{runtime.admin_port}/metrics", timeout=10).read().decode()
        assert 'pystatefun_kafka_ingress_bad_records_total{action="skip",ingress="kc/in"} 1.0' in metrics
    finally:
        runtime.stop()
    assert reason in runtime.log.read_text()


def test_bad_records_fail_policy_stops_only_that_partition_at_the_record(tmp_path, kafka_bootstrap):
    source, out = unique("in"), unique("out")
    create_topics(kafka_bootstrap, source, out, partitions=2)
    runtime = Runtime(counter_module(tmp_path / "app", kafka_bootstrap, source, playground=True), tmp_path / "data")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(source, out.encode(), b"a", partition=0)
    producer.produce(source, out.encode(), None, partition=0)  # bad: no key
    producer.produce(source, out.encode(), b"a", partition=0)  # behind the bad one: must wait
    producer.produce(source, out.encode(), b"b", partition=1)
    assert producer.flush(30) == 0
    runtime.start()
    try:
        counts = counts_by_key(read_all(kafka_bootstrap, out, 2))
        assert counts == {"a": [1], "b": [1]}
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{runtime.admin_port}/health", timeout=10).read())
        stopped = health["kafka_ingresses"]["kc/in"]["stopped_partitions"]
        assert list(stopped) == [f"{source}/0"] and "no key" in stopped[f"{source}/0"]
        runtime.stop()
        runtime.start()  # fail is not skip: after a restart it stops at the same record again
        assert counts_by_key(read_all(kafka_bootstrap, out, 2)) == {"a": [1], "b": [1]}
    finally:
        runtime.stop()


def test_bad_records_go_to_the_dead_letter_topic_with_the_reason(tmp_path, kafka_bootstrap):
    source, out, dead = unique("in"), unique("out"), unique("dead")
    create_topics(kafka_bootstrap, source, out, dead, partitions=1)
    policy = f"  badRecords:\n    type: dead-letter-topic\n    topic: {dead}"
    runtime = Runtime(counter_module(tmp_path / "app", kafka_bootstrap, source, bad_records=policy, playground=True), tmp_path / "data")
    produce(kafka_bootstrap, source, [(None, b"lost?"), (b"a", out.encode())])
    runtime.start()
    try:
        assert counts_by_key(read_all(kafka_bootstrap, out, 1)) == {"a": [1]}
        (letter,) = read_all(kafka_bootstrap, dead, 1)
        assert letter.value() == b"lost?" and letter.key() is None
        headers = dict(letter.headers())
        assert b"no key" in headers["pystatefun.reason"]
        assert headers["pystatefun.source"] == f"{source}/0@0".encode()
    finally:
        runtime.stop()


def test_startup_positions_apply_to_partitions_without_a_committed_position(tmp_path, kafka_bootstrap):
    """latest, specific-offsets, date and group-offsets, each on a topic of one partition holding four
    records of key "a", two of them written after a pause that the date falls in."""
    cases = {name: (unique(name), unique("out")) for name in ("latest", "specific", "date", "group")}
    for topic, out in cases.values():
        create_topics(kafka_bootstrap, topic, out, partitions=1)
        produce(kafka_bootstrap, topic, [(b"a", out.encode())] * 2)
    time.sleep(1.5)
    middle = datetime.now(timezone.utc)
    time.sleep(1.5)
    for topic, out in cases.values():
        produce(kafka_bootstrap, topic, [(b"a", out.encode())] * 2)
    group = unique("group")
    committer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    committer.commit(offsets=[TopicPartition(cases["group"][0], 0, 3)], asynchronous=False)
    committer.close()
    startups = {
        "latest": "type: latest",
        "specific": f"type: specific-offsets\n    offsets:\n      - \"{cases['specific'][0]}/0\": 1",
        "date": f"type: date\n    date: \"{middle.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} +0000\"",
        "group": "type: group-offsets",
    }
    read = {"specific": 3, "date": 2, "group": 1}  # of the four records
    for name, (topic, out) in cases.items():
        module = counter_module(tmp_path / name, kafka_bootstrap, topic, group=group if name == "group" else None,
                                startup=startups[name], playground=True)
        runtime = Runtime(module, tmp_path / f"{name}-data")
        runtime.start()
        try:
            if name == "latest":  # none of the four; one written after the start
                time.sleep(3)
                produce(kafka_bootstrap, topic, [(b"a", out.encode())])
                read[name] = 1
            assert counts_by_key(read_all(kafka_bootstrap, out, read[name])) == {"a": list(range(1, read[name] + 1))}, name
        finally:
            runtime.stop()
