"""What the Kafka tests share: topics, producing and reading records, the counter module on the Kafka
backend and its worker processes."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
import typing
import uuid
from collections import defaultdict
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from e2e.processes import free_port, kill, request, terminate, wait_for_port
from pystatefun.runtime.envelope import partition_of

APPS = Path(__file__).parent / "apps"


def wait_until(condition: typing.Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Waits for ``condition`` (a liveness bound, generous for a loaded machine: not a timing check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap: str, *topics: str, partitions: int = 4) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(t, partitions) for t in topics], operation_timeout=30).values():
        future.result(30)


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes] | tuple[bytes | None, bytes, int]]) -> None:
    """(key, value) records, partitioned by the client's default (CRC32 of the key), or (key, value,
    partition)."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value, *partition in records:
        producer.produce(topic, value, key, *partition)
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 60.0, isolation: str = "read_committed") -> list:
    """The records of ``topic`` from the beginning, once ``expected`` arrived (and a moment more, so
    that duplicates would show)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "isolation.level": isolation,
                         "enable.auto.commit": False})
    metadata = consumer.list_topics(topic, timeout=30).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
    records = []
    deadline = time.monotonic() + timeout
    settle_until = None
    try:
        while time.monotonic() < deadline:
            for record in consumer.consume(500, timeout=0.2):
                if record.error() is None:
                    records.append(record)
            if len(records) >= expected and settle_until is None:
                settle_until = time.monotonic() + 1.0
            if settle_until is not None and time.monotonic() > settle_until:
                break
    finally:
        consumer.close()
    return records


def counts_by_key(records) -> dict[str, list[int]]:
    counts = defaultdict(list)
    for record in records:
        counts[record.key().decode()].append(int(record.value().split()[0]))
    return counts




def exactly_once_egress(bootstrap: str) -> str:
    """The module document of the counter's exactly-once Kafka egress kc/out."""
    return f"""---
kind: io.statefun.kafka.v1/egress
spec:
  id: kc/out
  address: {bootstrap}
  deliverySemantic:
    type: exactly-once
    transactionTimeout: 1min
"""


# the playground ingress and egress, whose ports (INGRESS_PORT, EGRESS_PORT) the runtime harness waits for
PLAYGROUND_DOCUMENTS = ("---\nkind: io.statefun.playground.v1/ingress\nspec:\n  port: ${INGRESS_PORT}\n"
                        "---\nkind: io.statefun.playground.v1/egress\nspec:\n  port: ${EGRESS_PORT}\n  topics: [unused]\n")


def counter_module(folder: Path, bootstrap: str, source: str, *, group: str | None = None,
                   remote_url: str | None = None, startup: str = "type: earliest", bad_records: str = "",
                   playground: bool = False) -> Path:
    """Kafka ingress (topic ``source``, consumer group ``group`` or a new one) -> kc/counter ->
    exactly-once Kafka egress kc/out: every record counts one for its key, and each new count goes to
    the topic named by the record's value. The counter runs embedded, or remote at ``remote_url``.
    ``playground`` adds the playground ingress and egress (on ``INGRESS_PORT``/``EGRESS_PORT``), whose
    ports the embedded runtime harness waits for."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "counter.py").write_text((APPS / "counter.py").read_text())
    if remote_url is None:
        functions = "kind: pystatefun.v1/embedded\nspec:\n  functions: kc/*\n  module: counter:functions\n"
    else:
        functions = f"kind: io.statefun.endpoints.v2/http\nspec:\n  functions: kc/*\n  urlPathTemplate: {remote_url}\n"
    text = functions + f"""\
---
kind: io.statefun.kafka.v1/ingress
spec:
  id: kc/in
  address: {bootstrap}
  consumerGroupId: {group or unique("group")}
  startupPosition:
    {startup}
  topics:
    - topic: {source}
      valueType: kc/topic-name
      targets: [kc/counter]
{bad_records}
""" + exactly_once_egress(bootstrap)
    if playground:
        text += PLAYGROUND_DOCUMENTS
    path = folder / "module.yaml"
    path.write_text(text)
    return path


class KeyedRecords:
    """Records of random keys to the source topic, each naming ``out`` as where its count goes and
    carrying its place among its key's records; knows how many went to each key, and checks that each
    key's counts came out exactly as 1..n, each with its record's place (so in order)."""

    def __init__(self, bootstrap: str, source: str, out: str, keys: int = 30, seed: int = 5, partitions: int = 4):
        """``partitions``: of the source topic and of the application."""
        self.bootstrap, self.source, self.out = bootstrap, source, out
        self.partitions = partitions
        self.keys = [f"k{n}" for n in range(keys)]
        self.rng = random.Random(seed)
        self.sent: dict[str, int] = defaultdict(int)

    def send(self, count: int) -> None:
        batch = []
        for _ in range(count):
            key = self.rng.choice(self.keys)
            self.sent[key] += 1
            batch.append((key.encode(), f"{self.out} {self.sent[key]}".encode(), self.partition(key)))
        produce(self.bootstrap, self.source, batch)

    def partition(self, key: str) -> int:
        """Half of the keys go to the partition of the source that goes with their address's partition
        (the CRC32 of the key, librdkafka's default), so the worker that reads them runs them; the other
        half to the next one, as another client's partitioner would put them, so they reach their worker
        through <app>.messages."""
        partition = partition_of(key, self.partitions)
        return partition if self.keys.index(key) % 2 == 0 else (partition + 1) % self.partitions

    def check(self, timeout: float = 120) -> None:
        records = read_all(self.bootstrap, self.out, sum(self.sent.values()), timeout=timeout)
        counts = counts_by_key(records)
        assert {key: len(values) for key, values in counts.items()} == dict(self.sent)
        for key, values in counts.items():
            assert values == list(range(1, self.sent[key] + 1)), f"{key}: counts out of order, missing or twice"
        for record in records:
            count, place = record.value().split()
            assert count == place, f"{record.key().decode()}: record {place} was counted as {count}: out of order"


class Load(KeyedRecords):
    """The same, produced in the background at a steady pace while the ``with`` block runs."""

    def __init__(self, bootstrap: str, source: str, out: str):
        super().__init__(bootstrap, source, out)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.send(20)
            time.sleep(0.05)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    """One worker process: start it, kill -9 it, stop it (SIGTERM: it hands its partitions over)."""

    def __init__(self, module: Path, bootstrap: str, app: str, worker_id: str, log: Path, partitions: int = 4,
                 env: dict[str, str] | None = None, args: tuple[str, ...] = ()):
        """``env``: added to the process's environment (the module's ${...} values, say); ``args``: added
        to its command line (``--from-savepoint PATH``, say)."""
        self.module, self.bootstrap, self.app, self.worker_id, self.log = module, bootstrap, app, worker_id, log
        self.partitions = partitions
        self.env = env or {}
        self.args = args
        self.process: subprocess.Popen | None = None
        self.admin_port = free_port()

    def start(self, wait: bool = True) -> "Worker":
        out = open(self.log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pystatefun.cli", "run", str(self.module), "--backend", "kafka",
             "--bootstrap-servers", self.bootstrap, "--app", self.app, "--worker-id", self.worker_id,
             "--partitions", str(self.partitions), "--commit-interval", "20ms", "--admin-port", str(self.admin_port),
             "--log-level", "info", *self.args],
            stdout=out, stderr=subprocess.STDOUT, cwd=self.module.parent, env={**os.environ, **self.env},
        )
        out.close()
        if wait:
            try:
                wait_for_port(self.admin_port, self.process, timeout=90)
            except Exception as e:
                raise RuntimeError(f"{e}\n{self.log.read_text()[-3000:]}") from e
        return self

    def kill(self) -> None:
        kill(self.process)

    def stop(self) -> None:
        terminate(self.process, 60)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def owned_partitions(self) -> int:
        """How many partitions the worker runs, as its metrics say."""
        try:
            metrics = request(self.admin_port, "GET", "/metrics", timeout=60).body.decode()
        except OSError as e:
            state = "running" if self.alive() else f"exited with {self.process.poll() if self.process else None}"
            raise RuntimeError(f"worker {self.worker_id} ({state}) did not answer /metrics: {e}\n"
                               f"{self.log.read_text()[-4000:]}") from e
        line = next(line for line in metrics.splitlines() if line.startswith("pystatefun_kafka_owned_partitions "))
        return int(float(line.split()[1]))


@contextlib.contextmanager
def sharing(workers: list[Worker], partitions: int) -> typing.Iterator[list[Worker]]:
    """Starts ``workers`` and waits until each runs some of the ``partitions`` and together all of them;
    kills them (kill -9) when the block ends."""
    try:
        for worker in workers:
            worker.start()

        def shared() -> bool:
            owned = [worker.owned_partitions() for worker in workers]
            return all(owned) and sum(owned) == partitions

        wait_until(shared, "every worker owns partitions")
        yield workers
    finally:
        for worker in workers:
            worker.kill()

