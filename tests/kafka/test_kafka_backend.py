"""The Kafka backend with real worker processes and a real broker: state and counts exactly once across
worker restarts, kill -9 and hand-overs between workers; topics that do not fit are refused."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import typing
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import pytest

from e2e.conftest import official_server
from e2e.processes import free_port, request, wait_for_port
from pystatefun.runtime.envelope import partition_of

from .harness import (APPS, KeyedRecords, Load, Worker, counter_module, counts_by_key, create_topics, produce, read_all,
                      unique, wait_until)


def test_worker_restart_continues_the_counts(tmp_path, kafka_bootstrap):
    """Spec §6.7: foo, foo, bar -> (foo,1), (foo,2), (bar,1); restart the worker; again -> (foo,3),
    (foo,4), (bar,2)."""
    source, out, app = unique("in"), unique("out"), unique("app")
    create_topics(kafka_bootstrap, source, out)
    module = counter_module(tmp_path / "app", kafka_bootstrap, source)
    worker = Worker(module, kafka_bootstrap, app, "w0", tmp_path / "w0.log").start()
    try:
        produce(kafka_bootstrap, source, [(b"foo", out.encode()), (b"foo", out.encode()), (b"bar", out.encode())])
        assert counts_by_key(read_all(kafka_bootstrap, out, 3)) == {"foo": [1, 2], "bar": [1]}
        worker.stop()
        worker.start()
        produce(kafka_bootstrap, source, [(b"foo", out.encode()), (b"foo", out.encode()), (b"bar", out.encode())])
        assert counts_by_key(read_all(kafka_bootstrap, out, 6)) == {"foo": [1, 2, 3, 4], "bar": [1, 2]}
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{worker.admin_port}/metrics", timeout=10).read().decode()
        assert "pystatefun_kafka_owned_partitions 4.0" in metrics
        assert "# TYPE pystatefun_kafka_partition_lag gauge" in metrics  # per partition read from so far
        assert "pystatefun_epoch_commit_latency_seconds_count" in metrics
    finally:
        worker.stop()


def test_a_parked_address_does_not_hold_up_the_worker(tmp_path, kafka_bootstrap):
    """A key whose first record parks its address, then far more records for it than a backlog holds
    (1,000), then other keys' records in the same ingress partition: the worker goes on with them (the
    parked address holds its messages in memory, up to a bound: docs/runtime.md)."""
    source, out, app = unique("in"), unique("out"), unique("app")
    create_topics(kafka_bootstrap, source, out)
    module = counter_module(tmp_path / "app", kafka_bootstrap, source)
    produce(kafka_bootstrap, source, [(b"stuck", b"poison", 0)] + [(b"stuck", out.encode(), 0)] * 2500
            + [(f"k{n % 10}".encode(), out.encode(), 0) for n in range(100)])
    worker = Worker(module, kafka_bootstrap, app, "w0", tmp_path / "w0.log").start()
    try:
        counts = counts_by_key(read_all(kafka_bootstrap, out, 100))
        assert counts == {f"k{n}": list(range(1, 11)) for n in range(10)}
        parked = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{worker.admin_port}/parked", timeout=30).read())
        assert [(p["address"], p["waiting_messages"]) for p in parked] == [("kc/counter/stuck", 2501)]
    finally:
        worker.stop()


def test_a_partitions_log_is_read_before_its_ingress_records_when_a_worker_takes_it_over(tmp_path, kafka_bootstrap):
    """Guarantee 1 across a hand-over: what a worker had read and not processed is in the log for the
    partition's next owner, and the records its ingress partition gets meanwhile are newer. Eight keys of
    one partition park on their first record and 10,000 records each pile up behind them; the worker
    stops (all 80,000 unprocessed in the log: longer to read again than its ingress takes to start, so
    the old code let the new records overtake them every time); 100 more records per key come; the
    worker starts again and takes the partition over. Each address, skipped past its poison record,
    counts all 10,100 of its records in the order they were produced."""
    source, out, app = unique("in"), unique("out"), unique("app")
    create_topics(kafka_bootstrap, source, out)
    module = counter_module(tmp_path / "app", kafka_bootstrap, source)
    keys = [key for key in (f"stuck{n}" for n in range(100)) if partition_of(key, 4) == 0][:8]
    # in ingress partition 0, read with the addresses' partition: processed where they are read
    old = [(key.encode(), f"{out} {place}".encode(), 0) for place in range(1, 10_001) for key in keys]
    new = [(key.encode(), f"{out} {place}".encode(), 0) for place in range(10_001, 10_101) for key in keys]
    produce(kafka_bootstrap, source, [(key.encode(), b"poison", 0) for key in keys] + old)
    worker = Worker(module, kafka_bootstrap, app, "w0", tmp_path / "w0.log").start()

    def waiting() -> dict[str, int]:
        parked = json.loads(request(worker.admin_port, "GET", "/parked", timeout=30).body)
        return {p["address"].rsplit("/", 1)[1]: p["waiting_messages"] for p in parked}

    try:
        wait_until(lambda: waiting() == dict.fromkeys(keys, 10_001), "10,001 messages wait for each parked address")
        worker.stop()  # SIGTERM: it commits, the 80,008 messages unprocessed in the log
        produce(kafka_bootstrap, source, new)
        worker.start()
        wait_until(lambda: waiting() == dict.fromkeys(keys, 10_101), "all 10,101 messages wait for each again")
        for key in keys:
            assert request(worker.admin_port, "POST", f"/parked/kc/counter/{key}/skip", timeout=60).status == 200
        counted = collections.defaultdict(list)  # key -> [(count, place)]
        for record in read_all(kafka_bootstrap, out, 80_800, timeout=120):
            count, place = record.value().split()
            counted[record.key().decode()].append((int(count), int(place)))
        assert all([count for count, _ in counted[key]] == list(range(1, 10_101)) for key in keys), "each count once"
        swapped = {key: sum(count != place for count, place in counted[key]) for key in keys}
        assert swapped == dict.fromkeys(keys, 0), f"records counted out of their order, per key: {swapped}"
    finally:
        worker.stop()


KILLS = 20


@pytest.mark.parametrize("form", ["embedded", "remote-official"])
def test_three_workers_count_exactly_once_while_workers_are_killed(tmp_path, kafka_bootstrap, request, form):
    """Kafka ingress -> the counter (in the workers, or served by the official Python SDK) -> exactly-once
    Kafka egress, while a random worker is killed (kill -9) and restarted 20 times."""
    source, out, app = unique("in"), unique("out"), unique("app")
    create_topics(kafka_bootstrap, source, out)
    server = None
    if form == "remote-official":
        (tmp_path / "functions").mkdir()
        (tmp_path / "functions" / "counter.py").write_text((APPS / "counter.py").read_text())
        server = official_server(request.getfixturevalue("official_python"), tmp_path / "functions", "counter:functions")
        server.start()
        request.addfinalizer(server.stop)
    url = None if server is None else f"http://127.0.0.1:{server.port}/statefun"
    module = counter_module(tmp_path / "app", kafka_bootstrap, source, remote_url=url)
    workers = [Worker(module, kafka_bootstrap, app, f"w{i}", tmp_path / f"w{i}.log") for i in range(3)]
    records = KeyedRecords(kafka_bootstrap, source, out, seed=11)
    try:
        for worker in workers:
            worker.start()
        for _ in range(KILLS):
            records.send(150)
            time.sleep(records.rng.uniform(0.05, 0.5))  # anywhere in reading, processing, committing, handing over
            victim = records.rng.choice(workers)
            victim.kill()
            victim.start()
        records.send(150)
        records.check(timeout=120)
    finally:
        for worker in workers:
            worker.stop()


def test_a_topic_with_another_partition_count_is_refused(tmp_path, kafka_bootstrap):
    source, app = unique("in"), unique("app")
    create_topics(kafka_bootstrap, source)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(f"{app}.messages", 3)])[f"{app}.messages"].result(30)
    module = counter_module(tmp_path / "app", kafka_bootstrap, source)
    result = refused_start(module, kafka_bootstrap, app)
    assert f"topic {app}.messages has 3 partitions, but the application runs 4" in result.stderr


def refused_start(module: Path, bootstrap: str, app: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`pystatefun run` of a worker (4 partitions) that must refuse to start: exit 1, a message, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "pystatefun.cli", "run", str(module), "--backend", "kafka", "--bootstrap-servers",
         bootstrap, "--app", app, "--partitions", "4", "--admin-port", "0"],
        capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    return result


def test_a_missing_ingress_topic_is_refused(tmp_path, kafka_bootstrap):
    """Ingress partitions go with the partitions of <app>.messages, so the worker needs the ingress topic's
    partition count when it starts."""
    source, app = unique("in"), unique("app")
    module = counter_module(tmp_path / "app", kafka_bootstrap, source)
    result = refused_start(module, kafka_bootstrap, app)
    assert f"Kafka ingress kc/in: topic '{source}' does not exist" in result.stderr
    assert "create it first" in result.stderr


def test_offsets_held_by_a_transaction_it_cannot_fence_stop_the_worker_with_what_to_do(tmp_path, kafka_bootstrap):
    """A transaction that is not the application's (or one the broker lost track of) holding offsets of
    the application's partitions holds the worker's assignment back. The worker cannot fence it, so after
    its assignment timeout (60 s) it stops with the partitions and how to find and abort that
    transaction, instead of a bare timeout."""
    source, app = unique("in"), unique("app")
    create_topics(kafka_bootstrap, source)
    create_topics(kafka_bootstrap, f"{app}.messages", partitions=4)
    other = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": unique("other"),
                      "transaction.timeout.ms": 600_000})
    other.init_transactions(30)
    other.begin_transaction()
    group = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": app})
    try:
        other.send_offsets_to_transaction([TopicPartition(f"{app}.messages", p, 0) for p in range(4)],
                                          group.consumer_group_metadata(), 30)
        module = counter_module(tmp_path / "app", kafka_bootstrap, source)
        result = refused_start(module, kafka_bootstrap, app, timeout=240)
        assert f"the committed offsets of {app}.messages/" in result.stderr
        assert "were still held back after 60 s" in result.stderr
        assert "kafka-transactions.sh abort" in result.stderr
    finally:
        other.abort_transaction(30)
        group.close()


def test_records_partitioned_like_the_application_are_run_by_the_worker_that_reads_them(tmp_path, kafka_bootstrap):
    """Co-partitioning: a record in the ingress partition that goes with its address's partition is run
    where it is read; one in another partition reaches its owner through <app>.messages. Both count once."""
    source, out, app = unique("in"), unique("out"), unique("app")
    create_topics(kafka_bootstrap, source, out)
    module = counter_module(tmp_path / "app", kafka_bootstrap, source)
    workers = [Worker(module, kafka_bootstrap, app, f"w{i}", tmp_path / f"w{i}.log") for i in range(2)]
    try:
        for worker in workers:
            worker.start()
        wait_until(lambda: all("runs partitions" in w.log.read_text() for w in workers), "both workers run partitions")
        records = KeyedRecords(kafka_bootstrap, source, out, keys=20, seed=3)
        records.send(400)
        records.check()
        elsewhere = sum(metric(w, 'pystatefun_kafka_ingress_messages_elsewhere_total{ingress="kc/in"}') for w in workers)
        moved_keys = [key for key in records.keys if records.partition(key) != partition_of(key, 4)]
        # the records of the keys in another partition, when the other worker owns theirs (after the split)
        assert 0 < elsewhere <= sum(records.sent[key] for key in moved_keys)
    finally:
        for worker in workers:
            worker.stop()


def metric(worker: Worker, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{worker.admin_port}/metrics", timeout=10).read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} not in the metrics"
    return values[0]


def test_scaling_out_from_one_to_three_workers_and_back_under_load(tmp_path, kafka_bootstrap):
    source, out, app = unique("in"), unique("out"), unique("app")
    create_topics(kafka_bootstrap, source, out)
    module = counter_module(tmp_path / "app", kafka_bootstrap, source)
    workers = [Worker(module, kafka_bootstrap, app, f"w{i}", tmp_path / f"w{i}.log") for i in range(3)]
    try:
        workers[0].start()
        with Load(kafka_bootstrap, source, out) as load:
            time.sleep(2)
            workers[1].start()
            workers[2].start()
            wait_until(lambda: "runs partitions" in workers[2].log.read_text(), "the partitions were shared out")
            workers[2].stop()
            workers[1].stop()
            time.sleep(2)
        # the worker that stayed went through four rebalances without exiting, and nothing was lost or doubled
        assert workers[0].alive(), workers[0].log.read_text()[-3000:]
        load.check()
        assert "handed over partitions" in workers[1].log.read_text()
    finally:
        for worker in workers:
            worker.stop()


def start_workers(module: Path, bootstrap: str, app: str, admin: int, log: typing.IO[bytes]) -> subprocess.Popen:
    """`pystatefun run --workers 2`: two workers (admin API on ``admin`` and ``admin + 1``) kept running."""
    return subprocess.Popen(
        [sys.executable, "-m", "pystatefun.cli", "run", str(module), "--backend", "kafka", "--bootstrap-servers",
         bootstrap, "--app", app, "--partitions", "4", "--workers", "2", "--admin-port", str(admin),
         "--commit-interval", "20ms"],
        stdout=log, stderr=subprocess.STDOUT, cwd=module.parent, start_new_session=True,
    )


def stop_supervisor(supervisor: subprocess.Popen) -> None:
    """SIGTERM (the workers hand their partitions over); what is still running after 90 s is killed,
    so that no worker outlives its test."""
    supervisor.send_signal(signal.SIGTERM)
    try:
        supervisor.wait(90)
    except subprocess.TimeoutExpired:
        os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
        raise


def test_a_broker_of_three_stopped_and_restarted_under_load(tmp_path, kafka_cluster3):
    """Each node of a three-node cluster in turn (so the group and transaction coordinators move too) is
    stopped and restarted under load; the workers run under --workers, which starts again a worker that
    stopped (the Kafka client can hang when a coordinator moves; the worker then exits on purpose)."""
    bootstrap = kafka_cluster3.bootstrap_servers
    source, out, app = unique("in"), unique("out"), unique("app")
    create_topics(bootstrap, source, out)
    module = counter_module(tmp_path / "app", bootstrap, source)
    admin = free_port(2)
    log = open(tmp_path / "workers.log", "ab")
    supervisor = start_workers(module, bootstrap, app, admin, log)
    try:
        for port in (admin, admin + 1):
            wait_for_port(port, supervisor, timeout=90)
        with Load(bootstrap, source, out) as load:
            for node in range(3):
                time.sleep(2)
                kafka_cluster3.stop_node(node)
                time.sleep(3)
                kafka_cluster3.start_node(node)
            time.sleep(2)
        load.check(timeout=180)
    finally:
        stop_supervisor(supervisor)
        log.close()


def test_workers_option_starts_n_workers_and_restarts_one_that_dies(tmp_path, kafka_bootstrap):
    source, out, app = unique("in"), unique("out"), unique("app")
    create_topics(kafka_bootstrap, source, out)
    module = counter_module(tmp_path / "app", kafka_bootstrap, source)
    admin = free_port(2)
    log = open(tmp_path / "workers.log", "ab")
    supervisor = start_workers(module, kafka_bootstrap, app, admin, log)
    try:
        for port in (admin, admin + 1):
            wait_for_port(port, supervisor, timeout=90)
        produce(kafka_bootstrap, source, [(b"a", out.encode())] * 3)
        assert counts_by_key(read_all(kafka_bootstrap, out, 3))["a"] == [1, 2, 3]
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{admin}/health", timeout=10).read())
        os.kill(health["pid"], signal.SIGKILL)
        time.sleep(1.5)
        wait_for_port(admin, supervisor, timeout=90)  # started again
        produce(kafka_bootstrap, source, [(b"a", out.encode())] * 2)
        assert counts_by_key(read_all(kafka_bootstrap, out, 5))["a"] == [1, 2, 3, 4, 5]
        assert health["status"] == "ok"
    finally:
        stop_supervisor(supervisor)
        log.close()
    assert supervisor.returncode == 0
    assert "exited with -9; starting it again" in (tmp_path / "workers.log").read_text()
