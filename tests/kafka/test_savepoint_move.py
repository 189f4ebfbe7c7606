"""Exactly-once across a move under load (issue 21, "How it is checked", second bullet), with real
`pystatefun run` processes on a real broker.

A keyed counter is fed from a Kafka ingress (record key: the counter's key; value: a message id) and
writes, for every message, ``{key, count, message}`` to an exactly-once Kafka egress. A producer thread
keeps producing input for the whole test. The application is stopped with a savepoint while input keeps
arriving and started again from it elsewhere:

1. embedded backend -> Kafka backend (2 workers, another partition count), the embedded one stopped with
   ``pystatefun savepoint create --admin URL --stop``;
2. Kafka backend P=3 -> Kafka backend P=7 (2 workers under ``--workers 2``), the old workers stopped with
   SIGTERM and the savepoint taken with ``savepoint create --backend kafka``, and one new worker killed
   with kill -9 in the middle of restoring its partitions (the supervisor starts it again). So that there
   is a changelog to restore, the stopped application gets 140,000 more addresses of another type first.

Either way the egress, read ``read_committed``, holds every produced message exactly once and every key's
counts exactly 1..n, in order.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from e2e.processes import free_port, terminate, wait_for_port
from kafka.harness import Worker, create_topics, read_all, unique, wait_until
from kafka.test_kafka_backend import stop_supervisor
from pystatefun.backends.kafka import records
from pystatefun.runtime.envelope import partition_of
from pystatefun.runtime.epoch import StoredValue
from pystatefun.wire.request_reply_pb2 import TypedValue

KEYS = 24
MESSAGES = 2400
RATE = 120  # messages per second: the producer runs for about 20 s, through the whole move
INPUT_PARTITIONS = 4
# addresses of another function type added to the Kafka application's state, so that each new worker
# has a changelog to read when it is assigned its partitions (about 20,000 records per partition of 7)
BALLAST = 140_000

FUNCTIONS = '''
import json

from pystatefun import IntType, StatefulFunctions, ValueSpec, kafka_egress_message

functions = StatefulFunctions()


@functions.bind("mv/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    count = (context.storage.count or 0) + 1
    context.storage.count = count
    body = json.dumps({"key": context.address.id, "count": count, "message": message.raw_value().decode()})
    context.send_egress(kafka_egress_message(typename="mv/out", topic=%r, key=context.address.id, value=body))
'''

# The ingress's session timeout is the brokers' minimum (6 s) instead of librdkafka's 45 s: the embedded
# backend's ingress consumer is a static member of its group, which does not leave the group when it
# closes, and a restore into Kafka is refused while the ingress's group has members (see test 1).
MODULE = """\
kind: pystatefun.v1/embedded
spec:
  functions: mv/*
  module: functions:functions
---
kind: io.statefun.kafka.v1/ingress
spec:
  id: mv/in
  address: {bootstrap}
  consumerGroupId: {group}
  startupPosition:
    type: earliest
  properties:
    - session.timeout.ms: 6000
  topics:
    - topic: {source}
      valueType: mv/message-id
      targets: [mv/counter]
---
kind: io.statefun.kafka.v1/egress
spec:
  id: mv/out
  address: {bootstrap}
  deliverySemantic:
    type: exactly-once
    transactionTimeout: 1min
"""


class MovingApp:
    """The application's topics, module and consumer group, all named for this test alone."""

    def __init__(self, folder: Path, bootstrap: str):
        self.folder, self.bootstrap = folder, bootstrap
        self.source, self.out, self.group = unique("mv-in"), unique("mv-out"), unique("mv-group")
        create_topics(bootstrap, self.source, partitions=INPUT_PARTITIONS)
        create_topics(bootstrap, self.out, partitions=3)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "functions.py").write_text(FUNCTIONS % self.out)
        self.module = self.module_with(self.group)

    def module_with(self, group: str) -> Path:
        """The module, its Kafka ingress reading with consumer group ``group``."""
        path = self.folder / f"module-{group}.yaml"
        path.write_text(MODULE.format(bootstrap=self.bootstrap, group=group, source=self.source))
        return path


class Feed:
    """A daemon thread producing MESSAGES records (message ids m0, m1, ... to random keys) at RATE per
    second, for at most ``limit`` seconds."""

    def __init__(self, bootstrap: str, topic: str, seed: int, limit: float = 90.0):
        self.bootstrap, self.topic, self.limit = bootstrap, topic, limit
        self.rng = random.Random(seed)
        self.sent: dict[str, str] = {}  # message id -> key
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 5})
            started = time.monotonic()
            deadline = started + self.limit
            for n in range(MESSAGES):
                if self._stop.is_set() or time.monotonic() > deadline:
                    break
                key, message = f"k{self.rng.randrange(KEYS)}", f"m{n}"
                producer.produce(self.topic, message.encode(), key.encode())
                self.sent[message] = key
                producer.poll(0)
                pause = started + (n + 1) / RATE - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            assert producer.flush(30) == 0, "the input was not all acknowledged"
        except BaseException as e:  # noqa: BLE001 - reported by wait()
            self.error = e
        finally:
            self.done.set()

    def start(self) -> "Feed":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(40)

    def wait(self) -> None:
        assert self.done.wait(self.limit + 40), "the producer did not finish"
        assert self.error is None, f"the producer failed: {self.error!r}"
        assert len(self.sent) == MESSAGES, f"only {len(self.sent)} of {MESSAGES} messages were produced in time"


def check_exactly_once(bootstrap: str, out: str, sent: dict[str, str]) -> dict[str, int]:
    """The egress, read_committed: every message once, every key's counts 1..n in order. Returns the
    counts per key."""
    records = read_all(bootstrap, out, len(sent), timeout=90)
    outputs = [json.loads(record.value()) for record in records]
    seen = Counter(o["message"] for o in outputs)
    twice = sorted(m for m, n in seen.items() if n > 1)
    lost = sorted(set(sent) - set(seen), key=lambda m: int(m[1:]))
    unknown = sorted(set(seen) - set(sent))
    assert not twice and not lost and not unknown, (
        f"{len(outputs)} egress records for {len(sent)} messages: {len(twice)} twice (e.g. {twice[:5]}), "
        f"{len(lost)} lost (e.g. {lost[:5]}), {len(unknown)} unknown (e.g. {unknown[:5]})")
    assert all(o["key"] == sent[o["message"]] for o in outputs), "a message was counted for another key"
    per_key: dict[str, list[int]] = defaultdict(list)
    for o in outputs:  # one key's records are in one partition of the egress topic: in their order
        per_key[o["key"]].append(o["count"])
    expected = Counter(sent.values())
    for key, counts in per_key.items():
        assert sorted(counts) == list(range(1, expected[key] + 1)), f"{key}: counts {counts}"
        assert counts == sorted(counts), f"{key}: counts out of order: {counts}"
    assert set(per_key) == set(expected)
    return {key: len(counts) for key, counts in per_key.items()}


def egress_count(bootstrap: str, out: str) -> int:
    """How many committed records the egress topic has now (read_committed)."""
    return len(read_all(bootstrap, out, 10**9, timeout=2))


def group_members(bootstrap: str, group: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(10)
    except KafkaException as e:
        if e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
            return 0
        raise
    return len(description.members)


def cli(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pystatefun.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def start_workers(app: MovingApp, name: str, partitions: int, savepoint: Path, admin: int, log: Path,
                  module: Path | None = None) -> subprocess.Popen:
    """`pystatefun run --backend kafka --workers 2 --from-savepoint`: the restore, then two workers kept
    running (admin API on ``admin`` and ``admin + 1``); in its own process group (see stop_supervisor).
    ``module``: the app's module unless given."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pystatefun.cli", "run", str(module or app.module), "--backend", "kafka",
             "--bootstrap-servers", app.bootstrap, "--app", name, "--partitions", str(partitions), "--workers", "2",
             "--from-savepoint", str(savepoint), "--admin-port", str(admin), "--commit-interval", "20ms",
             "--log-level", "info"],
            stdout=out, stderr=subprocess.STDOUT, cwd=app.folder, start_new_session=True)


def ended(supervisor: subprocess.Popen | None) -> None:
    """Stops a supervisor and its workers whatever happened (kill -9 of the group after 90 s)."""
    if supervisor is not None and supervisor.poll() is None:
        try:
            stop_supervisor(supervisor)
        except subprocess.TimeoutExpired:
            pass  # killed


def test_embedded_to_kafka_under_load_exactly_once(tmp_path, kafka_bootstrap):
    app = MovingApp(tmp_path / "app", kafka_bootstrap)
    savepoint = tmp_path / "move.savepoint"
    admin = free_port()
    log = tmp_path / "embedded.log"
    started = time.monotonic()
    feed = Feed(kafka_bootstrap, app.source, seed=1)
    embedded = supervisor = None
    try:
        with open(log, "ab") as out:
            embedded = subprocess.Popen(
                [sys.executable, "-m", "pystatefun.cli", "run", str(app.module), "--data-dir", str(tmp_path / "data"),
                 "--admin-port", str(admin), "--commit-interval", "20ms", "--log-level", "info"],
                stdout=out, stderr=subprocess.STDOUT, cwd=app.folder)
        wait_for_port(admin, embedded, timeout=60)
        feed.start()
        wait_until(lambda: egress_count(kafka_bootstrap, app.out) >= MESSAGES // 6, "the embedded one counts", timeout=60)

        # stop with a savepoint while the input keeps arriving
        taken = cli("savepoint", "create", "--admin", f"http://127.0.0.1:{admin}", "--stop", str(savepoint), cwd=app.folder)
        assert taken.returncode == 0, taken.stderr
        assert embedded.wait(30) == 0
        at_stop = len(feed.sent)
        assert 0 < at_stop < MESSAGES, "the savepoint was not taken under load"
        assert "stopped with a savepoint at" in log.read_text()

        # its ingress consumer was a static member of the group: it stays until the session timeout,
        # and the restore refuses while the group has members
        wait_until(lambda: group_members(kafka_bootstrap, app.group) == 0, "the embedded ingress left its group",
                   timeout=30)
        name = unique("mv-kafka")
        workers_log = tmp_path / "workers.log"
        supervisor = start_workers(app, name, 5, savepoint, free_port(2), workers_log)
        feed.wait()
        counts = check_exactly_once(kafka_bootstrap, app.out, feed.sent)
        text = workers_log.read_text()
        assert re.search(rf"restored .*move\.savepoint \(embedded application .*\) into application {name}", text), text[-3000:]
        assert len(set(re.findall(r"worker (\S+) runs partitions", text))) == 2, "not two workers"
        print(f"embedded -> kafka P=5: {MESSAGES} messages to {len(counts)} keys, {at_stop} produced before the "
              f"stop-with-savepoint; {time.monotonic() - started:.1f} s")
    finally:
        feed.stop()
        if embedded is not None:
            terminate(embedded, 15)
        ended(supervisor)


def test_kafka_to_kafka_with_a_worker_killed_while_restoring(tmp_path, kafka_bootstrap):
    app = MovingApp(tmp_path / "app", kafka_bootstrap)
    old_name = unique("mv-p3")
    old = [Worker(app.module, kafka_bootstrap, old_name, f"{old_name}-w{n}", tmp_path / f"old-w{n}.log", partitions=3)
           for n in range(2)]
    savepoint = tmp_path / "p3.savepoint"
    started = time.monotonic()
    feed = Feed(kafka_bootstrap, app.source, seed=2)
    supervisor = None
    try:
        for worker in old:
            worker.start(wait=False)
        for worker in old:
            wait_for_port(worker.admin_port, worker.process, timeout=90)
        feed.start()
        wait_until(lambda: egress_count(kafka_bootstrap, app.out) >= MESSAGES // 6, "the P=3 application counts",
                   timeout=60)

        # stop the workers (each commits its last epoch and leaves the group), then take the savepoint
        # (one SIGTERM each, at once, as the supervisor and Ctrl-C send them; a second one that lands after
        # the worker's event loop is gone ends it with -15, so no Worker.stop() here)
        for worker in old:
            worker.process.send_signal(signal.SIGTERM)
        for worker in old:
            assert worker.process.wait(60) == 0, worker.log.read_text()[-3000:]
        add_ballast(kafka_bootstrap, old_name, 3)
        taken = cli("savepoint", "create", "--backend", "kafka", "--bootstrap-servers", kafka_bootstrap, "--app",
                    old_name, "--module", str(app.module), str(savepoint), cwd=app.folder)
        assert taken.returncode == 0, taken.stderr
        at_stop = len(feed.sent)
        assert 0 < at_stop < MESSAGES, "the savepoint was not taken under load"

        # the new application, P=7, its ingress in a new consumer group: where it reads can only come from
        # the savepoint (the old group's offsets are the same positions, and would hide a restore that
        # lost them); kill -9 the first worker that restores a partition, in the middle of its others
        name = unique("mv-p7")
        workers_log = tmp_path / "workers.log"
        supervisor = start_workers(app, name, 7, savepoint, free_port(2), workers_log, app.module_with(unique("mv-group")))
        victim, seen = _kill_while_restoring(supervisor, workers_log)
        assert f"worker {victim} runs partitions" not in seen, "the kill came after the worker's restore"
        feed.wait()
        counts = check_exactly_once(kafka_bootstrap, app.out, feed.sent)
        text = workers_log.read_text()
        restored = re.search(rf"restored .*p3\.savepoint \(kafka application {old_name}, .*\) into application {name}: "
                             rf"(\d+) state values", text)
        assert restored and BALLAST < int(restored.group(1)) <= BALLAST + KEYS, text[:3000]  # and the counters
        assert "exited with -9; starting it again" in text
        after = text[len(seen):]
        assert f"worker {victim} runs partitions" in after, "the killed worker did not come back"
        print(f"kafka P=3 -> kafka P=7: {MESSAGES} messages to {len(counts)} keys, {at_stop} produced before the "
              f"stop; worker {victim} killed after {seen.count(f'worker {victim} restored partition')} restored "
              f"partition(s); {time.monotonic() - started:.1f} s")
    finally:
        feed.stop()
        for worker in old:
            worker.kill()
        ended(supervisor)


def add_ballast(bootstrap: str, app: str, partitions: int) -> None:
    """BALLAST addresses mv/ballast/b<n> with a state value, written into the changelog of the stopped
    application ``app`` where its workers keep them (the key and value of backends/kafka/records.py,
    the partition of the address's id)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 50,
                         "compression.type": "lz4"})
    value = records.encode_state(StoredValue(TypedValue(typename="io.statefun.types/int", has_value=True,
                                                        value=b"\x08\x01")))
    for n in range(BALLAST):
        id = f"b{n}"
        while True:
            try:
                producer.produce(f"{app}.state", value, records.state_key("mv/ballast", id, "v"), partition_of(id, partitions))
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def _kill_while_restoring(supervisor: subprocess.Popen, log: Path, timeout: float = 90) -> tuple[str, str]:
    """Waits for the first worker of ``supervisor`` to finish restoring a partition of the changelog and
    kills it (kill -9) at once, while it is still restoring its others. Returns its worker id and the log
    as it was when it was killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if supervisor.poll() is not None:
            raise AssertionError(f"the supervisor exited with {supervisor.returncode}: {log.read_text()[-3000:]}")
        text = log.read_text()
        restored = re.search(r"worker (\S+) restored partition \d+", text)
        if restored:
            victim = restored.group(1)
            index = int(victim.rsplit("-", 1)[1])
            pid = int(re.search(rf"worker {index} started \(pid (\d+)\)", text).group(1))
            os.kill(pid, signal.SIGKILL)
            return victim, log.read_text()
        time.sleep(0.002)
    raise AssertionError(f"no worker restored a partition within {timeout:.0f}s: {log.read_text()[-3000:]}")
