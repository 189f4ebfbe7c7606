"""The Kafka backend with real worker processes and a real broker: state and counts exactly once across
worker restarts, kill -9 and hand-overs between workers; topics that do not fit are refused."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import defaultdict

from confluent_kafka.admin import AdminClient, NewTopic

from .harness import Worker, counts_by_key, create_topics, kafka_module, produce, read_all, unique


def test_worker_restart_continues_the_counts(tmp_path, kafka_bootstrap):
    """Spec §6.7: foo, foo, bar -> (foo,1), (foo,2), (bar,1); restart the worker; again -> (foo,3),
    (foo,4), (bar,2)."""
    source, out, app = unique("in"), unique("out"), unique("app")
    create_topics(kafka_bootstrap, source, out)
    module = kafka_module(tmp_path / "app", kafka_bootstrap, source)
    worker = Worker(module, kafka_bootstrap, app, "w0", tmp_path / "w0.log").start()
    try:
        produce(kafka_bootstrap, source, [(b"foo", out.encode()), (b"foo", out.encode()), (b"bar", out.encode())])
        assert counts_by_key(read_all(kafka_bootstrap, out, 3)) == {"foo": [1, 2], "bar": [1]}
        worker.stop()
        worker.start()
        produce(kafka_bootstrap, source, [(b"foo", out.encode()), (b"foo", out.encode()), (b"bar", out.encode())])
        assert counts_by_key(read_all(kafka_bootstrap, out, 6)) == {"foo": [1, 2, 3, 4], "bar": [1, 2]}
    finally:
        worker.stop()


KILLS = 20


def test_three_workers_count_exactly_once_while_workers_are_killed(tmp_path, kafka_bootstrap):
    source, out, app = unique("in"), unique("out"), unique("app")
    create_topics(kafka_bootstrap, source, out)
    module = kafka_module(tmp_path / "app", kafka_bootstrap, source)
    workers = [Worker(module, kafka_bootstrap, app, f"w{i}", tmp_path / f"w{i}.log") for i in range(3)]
    rng = random.Random(11)
    keys = [f"k{n}" for n in range(30)]
    sent: dict[str, int] = defaultdict(int)

    def send(count: int) -> None:
        batch = []
        for _ in range(count):
            key = rng.choice(keys)
            sent[key] += 1
            batch.append((key.encode(), out.encode()))
        produce(kafka_bootstrap, source, batch)

    try:
        for worker in workers:
            worker.start()
        for _ in range(KILLS):
            send(150)
            time.sleep(rng.uniform(0.05, 0.5))  # anywhere in reading, processing, committing, handing over
            victim = rng.choice(workers)
            victim.kill()
            victim.start()
        send(150)
        records = read_all(kafka_bootstrap, out, sum(sent.values()), timeout=120)
    finally:
        for worker in workers:
            worker.stop()
    counts = counts_by_key(records)
    assert {key: len(values) for key, values in counts.items()} == dict(sent)
    for key, values in counts.items():
        assert values == list(range(1, sent[key] + 1)), f"{key}: counts out of order, missing or twice"


def test_a_topic_with_another_partition_count_is_refused(tmp_path, kafka_bootstrap):
    source, app = unique("in"), unique("app")
    create_topics(kafka_bootstrap, source)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(f"{app}.messages", 3)])[f"{app}.messages"].result(30)
    module = kafka_module(tmp_path / "app", kafka_bootstrap, source)
    result = subprocess.run(
        [sys.executable, "-m", "pystatefun.cli", "run", str(module), "--backend", "kafka", "--bootstrap-servers",
         kafka_bootstrap, "--app", app, "--partitions", "4", "--admin-port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert f"topic {app}.messages has 3 partitions, but the application runs 4" in result.stderr
    assert "Traceback" not in result.stderr
