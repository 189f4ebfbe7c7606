"""Savepoints of the Kafka backend (savepoints/kafka.py) with real worker processes on a real broker: an
application with state, pending messages, delayed messages with cancellation tokens, a parked address, a
dead letter, an idempotency record and Kafka ingress positions is stopped, taken, restored into a new
application with another partition count (3 -> 5), and goes on there exactly where it was."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from e2e.processes import free_port, request, wait_for_port
from kafka.harness import Worker, create_topics, produce, read_all, unique, wait_until
from pystatefun.backends.kafka import records
from pystatefun.backends.kafka.topics import prepare_topics
from pystatefun.config import load_module
from pystatefun.runtime.envelope import Envelope, address, partition_of
from pystatefun.savepoints import kafka as kafka_savepoints
from pystatefun.savepoints.format import TABLES, EgressRow, SavepointError, SavepointReader, SavepointWriter
from pystatefun.wire.kafka_egress_pb2 import KafkaProducerRecord
from pystatefun.wire.request_reply_pb2 import TypedValue

SOURCE_PARTITIONS = 3
TARGET_PARTITIONS = 5
KEYS = [f"k{n}" for n in range(10)]
SCHEDULERS = [f"s{n}" for n in range(4)]
# the delayed messages that fire (after the restore, once the new workers run, or at once if that took
# longer) and those that are cancelled in the restored application before they are due
DELAYS_MS = {"fire": 30_000, "cancel": 600_000}
INGRESS_KEY = "io.statefun.playground/ingress:once"

FUNCTIONS = '''
from datetime import timedelta

from pystatefun import IntType, StatefulFunctions, ValueSpec, message_builder

functions = StatefulFunctions()


@functions.bind("sp/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    context.storage.count = (context.storage.count or 0) + 1


@functions.bind("sp/scheduler")
def scheduler(context, message):
    command, token, *delay = message.raw_value().decode().split(":")
    if command == "schedule":  # the same tokens for every scheduler: a token is scoped to its sender
        context.send_after(timedelta(milliseconds=int(delay[0])), message_builder("sp/counter",
                           f"{token}-{context.address.id}", int_value=1), cancellation_token=token)
    elif command == "cancel":
        context.cancel_delayed_message(token)
    else:  # no function has that type: a dead letter
        context.send(message_builder("sp/unknown", token, str_value="lost"))


@functions.bind("sp/fails", specs=[ValueSpec("count", IntType)])
def fails(context, message):
    if message.raw_value() == b"fail":
        raise RuntimeError("told to fail")
    context.storage.count = (context.storage.count or 0) + 1
'''

MODULE = """\
kind: pystatefun.v1/embedded
spec:
  functions: sp/*
  module: functions:functions
---
kind: io.statefun.playground.v1/ingress
spec:
  port: ${INGRESS_PORT}
---
kind: io.statefun.kafka.v1/ingress
spec:
  id: sp/in
  address: BOOTSTRAP
  consumerGroupId: GROUP
  startupPosition:
    type: earliest
  topics:
    - topic: SOURCE
      valueType: sp/tick
      targets: [sp/counter]
"""


class App:
    """Workers of one application of the module, each with its own ingress and admin port."""

    def __init__(self, folder: Path, module: Path, bootstrap: str, name: str, partitions: int, workers: int = 2):
        self.name, self.partitions, self.bootstrap = name, partitions, bootstrap
        self.ports = [free_port() for _ in range(workers)]
        self.workers = [Worker(module, bootstrap, name, f"{name}-w{n}", folder / f"{name}-w{n}.log", partitions,
                               env={"INGRESS_PORT": str(port)}) for n, port in enumerate(self.ports)]

    def start(self) -> None:
        for worker in self.workers:
            worker.start(wait=False)
        for worker in self.workers:
            try:
                wait_for_port(worker.admin_port, worker.process, timeout=90)
            except Exception as e:
                raise RuntimeError(f"{e}\n{worker.log.read_text()[-3000:]}") from e
        wait_until(lambda: sum(self.owned(n) for n in range(len(self.workers))) == self.partitions,
                   "every partition is owned", timeout=90)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def send(self, function: str, id: str, body: bytes, key: str | None = None, worker: int = 0):
        headers = {"Content-Type": "application/vnd.sp/tick"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return request(self.ports[worker], "PUT", f"/{function}/{id}", body, headers, timeout=60)

    def admin(self, method: str, path: str, worker: int = 0):
        return request(self.workers[worker].admin_port, method, path, b"", {"Content-Type": "application/json"}, timeout=60)

    def owned(self, worker: int) -> int:
        metrics = self.admin("GET", "/metrics", worker).body.decode()
        line = next((line for line in metrics.splitlines() if line.startswith("pystatefun_kafka_owned_partitions ")), None)
        return 0 if line is None else int(float(line.split()[1]))

    def count(self, function: str, id: str) -> int | None:
        shown = self.admin("GET", f"/state/{function}/{id}")
        assert shown.status == 200, shown
        value = json.loads(shown.body)["state"].get("count")
        return None if value is None else value["value"]

    def json(self, path: str) -> object:
        answer = self.admin("GET", path)
        assert answer.status == 200, answer
        return json.loads(answer.body)


class Source:
    """The application savepointed: its module, ingress topic and the app run on SOURCE_PARTITIONS."""

    def __init__(self, folder: Path, bootstrap: str):
        self.folder, self.bootstrap = folder, bootstrap
        self.topic, self.group = unique("sp-in"), unique("sp-group")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "functions.py").write_text(FUNCTIONS)
        self.module_path = folder / "module.yaml"
        self.module_path.write_text(MODULE.replace("BOOTSTRAP", bootstrap).replace("GROUP", self.group)
                                    .replace("SOURCE", self.topic))
        self.module = load_module(self.module_path, env={"INGRESS_PORT": "1"})
        create_topics(bootstrap, self.topic, partitions=SOURCE_PARTITIONS)
        self.app = App(folder, self.module_path, bootstrap, unique("sp-a"), SOURCE_PARTITIONS)
        self.ticks = Counter()

    def tick(self, rounds: int) -> None:
        """``rounds`` records per key into the ingress topic."""
        produce(self.bootstrap, self.topic, [(key.encode(), b"tick") for _ in range(rounds) for key in KEYS])
        for key in KEYS:
            self.ticks[key] += rounds


@pytest.fixture(scope="module")
def source(tmp_path_factory, kafka_bootstrap):
    """The source application, running, with something of every kind."""
    source = Source(tmp_path_factory.mktemp("savepoints"), kafka_bootstrap)
    source.tick(3)
    app = source.app
    try:
        app.start()
        for id in SCHEDULERS:
            for token in ("fire", "cancel"):
                assert app.send("sp/scheduler", id, f"schedule:{token}:{DELAYS_MS[token]}".encode()).status == 202
        source.scheduled_at = time.time()
        assert app.send("sp/fails", "p1", b"fail").status == 202
        wait_until(lambda: [p["address"] for p in app.json("/parked")] == ["sp/fails/p1"], "p1 is parked")
        for _ in range(2):  # wait behind the failed message: pending when the workers stop
            assert app.send("sp/fails", "p1", b"ok", worker=1).status == 202
        assert app.send("sp/counter", "idem", b"tick", key="once").status == 202
        assert app.send("sp/scheduler", "s0", b"lost:x").status == 202
        wait_until(lambda: [d["target"] for d in app.json("/dead-letters")] == ["sp/unknown/x"], "the dead letter")
        wait_until(lambda: all(app.count("sp/counter", key) == 3 for key in KEYS), "the ingress records are counted")
        wait_until(lambda: app.json("/parked")[0]["waiting_messages"] == 3, "p1 holds its messages")
        for id in SCHEDULERS:
            assert len(app.json(f"/delayed/sp/scheduler/{id}")) == 2
        yield source
    finally:
        app.stop()


def test_take_is_refused_while_a_worker_runs(source, tmp_path):
    path = tmp_path / "refused.savepoint"
    with pytest.raises(SavepointError) as refused:
        kafka_savepoints.take(str(path), source.bootstrap, source.app.name, source.module)
    message = str(refused.value)
    assert f"worker(s) {source.app.name}-w0, {source.app.name}-w1 of {source.app.name} still run" in message
    assert "stop them (SIGTERM" in message
    assert not path.exists() and not list(tmp_path.iterdir())


def _inject(source: Source) -> tuple[list[str], str]:
    """With the workers stopped: three messages to counters in one partition of <app>.messages, the second
    marked processed ahead of the committed offset in that partition's ``o`` record (as a worker leaves it
    when it processed a later message of the partition before an earlier one). Returns the ids of the
    counters and the one whose message the take must leave out."""
    parked = partition_of("p1", SOURCE_PARTITIONS)
    partition = next(p for p in range(SOURCE_PARTITIONS) if p != parked)
    ids = [id for id in (f"raw{n}" for n in range(100)) if partition_of(id, SOURCE_PARTITIONS) == partition][:3]
    producer = Producer({"bootstrap.servers": source.bootstrap, "enable.idempotence": True})
    offsets = []
    for id in ids:
        envelope = Envelope(address("sp/counter", id), None, TypedValue(typename="sp/tick", has_value=True, value=b"tick"))
        producer.produce(f"{source.app.name}.messages", records.encode_message(envelope), id.encode(), partition,
                         on_delivery=lambda error, message: offsets.append(message.offset()))
    producer.flush(30)
    done = _last_processed(source.bootstrap, source.app.name, partition) | {offsets[1]}
    producer.produce(f"{source.app.name}.state", records.encode_processed(done), records.PROCESSED_KEY, partition)
    assert producer.flush(30) == 0
    return ids, ids[1]


def _last_processed(bootstrap: str, app: str, partition: int) -> set[int]:
    """The offsets in the last ``o`` record of a changelog partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    tp = TopicPartition(f"{app}.state", partition)
    low, high = consumer.get_watermark_offsets(tp, timeout=30)
    consumer.assign([TopicPartition(tp.topic, partition, low)])
    found: set[int] = set()
    try:
        while consumer.position([tp])[0].offset < high:
            for record in consumer.consume(500, 1):
                if record.error() is None and record.key() == records.PROCESSED_KEY:
                    found = set() if record.value() is None else records.decode_processed(record.value())
    finally:
        consumer.close()
    return found


@pytest.fixture(scope="module")
def savepoint(source, tmp_path_factory):
    """The source stopped (SIGTERM), some messages injected, and its savepoint taken."""
    source.app.stop()
    source.raw, source.skipped = _inject(source)
    path = tmp_path_factory.mktemp("taken") / "a.savepoint"
    progress: list[tuple[str, int]] = []
    manifest = kafka_savepoints.take(str(path), source.bootstrap, source.app.name, source.module,
                                     progress=lambda what, n: progress.append((what, n)))
    assert (manifest.source_backend, manifest.application, manifest.partitions, manifest.mode) == \
        ("kafka", source.app.name, SOURCE_PARTITIONS, "stop")
    assert progress and {what for what, _ in progress} >= {"state", "messages"}
    return path


def _rows(path: Path, table: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


def test_the_savepoint_holds_each_kind_once(source, savepoint):
    with SavepointReader(savepoint) as reader:
        reader.verify()
        counts = reader.manifest.counts
    state = {(typename, id): value for typename, id, name, value, _ in _rows(savepoint, "state")}
    assert {id for typename, id in state if typename == "sp/counter"} == {*KEYS, "idem"}
    assert ("sp/fails", "p1") not in state  # it never ran successfully
    messages = [(t, i, ct, ci, TypedValue.FromString(v).value) for t, i, ct, ci, v in _rows(savepoint, "messages")]
    # p1's failed message and the two behind it, in order; the injected ones but the one processed ahead
    assert [m for m in messages if m[0] == "sp/fails"] == [("sp/fails", "p1", None, None, b"fail"),
                                                           *[("sp/fails", "p1", None, None, b"ok")] * 2]
    assert [m for m in messages if m[0] == "sp/counter"] == [("sp/counter", id, None, None, b"tick")
                                                             for id in source.raw if id != source.skipped]
    assert len(messages) == 5
    timers = _rows(savepoint, "timers")
    assert sorted((t[1], t[2], t[3], t[4], t[5]) for t in timers) == sorted(
        ("sp/counter", f"{token}-{id}", "sp/scheduler", id, token) for id in SCHEDULERS for token in ("fire", "cancel"))
    assert all(abs(t[0] - (source.scheduled_at * 1000 + DELAYS_MS[t[5]])) < 15_000 for t in timers)
    (parked,) = _rows(savepoint, "parked")
    assert parked[:2] == ("sp/fails", "p1") and "told to fail" in parked[2]
    (letter,) = _rows(savepoint, "dead_letters")
    assert letter[:4] == ("sp/unknown", "x", "sp/scheduler", "s0")
    assert TypedValue.FromString(letter[4]).typename == "io.statefun.types/string" and letter[6] > 0
    (idempotency,) = _rows(savepoint, "idempotency")
    assert idempotency[0] == INGRESS_KEY and idempotency[2] == 202
    positions = _rows(savepoint, "ingress_positions")
    assert [(ingress, topic, p) for ingress, topic, p, _ in positions] == [("sp/in", source.topic, p) for p in range(SOURCE_PARTITIONS)]
    assert sum(offset for *_, offset in positions) == sum(source.ticks.values())
    assert counts["egress"] == counts["function_specs"] == 0  # in their topics already; renegotiated


@pytest.fixture(scope="module")
def restored(source, savepoint, tmp_path_factory):
    """The savepoint restored into a new application of TARGET_PARTITIONS partitions, not started yet."""
    name = unique("sp-b")
    progress: list[tuple[str, int]] = []
    manifest = kafka_savepoints.restore(str(savepoint), source.bootstrap, name, TARGET_PARTITIONS, source.module,
                                        progress=lambda what, n: progress.append((what, n)))
    assert manifest.application == source.app.name
    assert ("verified", sum(manifest.counts.values())) in progress
    assert kafka_savepoints.restored_from(source.bootstrap, name) == str(savepoint)
    return App(tmp_path_factory.mktemp("restored"), source.module_path, source.bootstrap, name, TARGET_PARTITIONS)


def test_a_restored_application_taken_again_is_the_same_savepoint(source, savepoint, restored, tmp_path):
    """Field by field, every table (idempotency records are in every partition of the new application,
    and taken back once)."""
    again = tmp_path / "b.savepoint"
    manifest = kafka_savepoints.take(str(again), source.bootstrap, restored.name, source.module)
    assert manifest.partitions == TARGET_PARTITIONS
    for table in TABLES:
        assert sorted(_rows(again, table)) == sorted(_rows(savepoint, table)), table
    per_address = lambda path: [(row[0], row[1], row[4]) for row in _rows(path, "messages")]  # noqa: E731
    for target in {row[:2] for row in _rows(savepoint, "messages")}:
        assert [r for r in per_address(again) if r[:2] == target] == [r for r in per_address(savepoint) if r[:2] == target]


def test_the_restored_application_goes_on_where_the_source_stopped(source, savepoint, restored):
    app = restored
    app.start()
    try:
        # state, re-partitioned
        for key in KEYS:
            assert app.count("sp/counter", key) == 3
        # the ingress continues from the positions: every record counted once in all
        source.tick(2)
        wait_until(lambda: all(app.count("sp/counter", key) == 5 for key in KEYS), "the new records are counted")
        # the pending messages ran once, the one processed ahead of the committed offset not again
        wait_until(lambda: all(app.count("sp/counter", id) == 1 for id in source.raw if id != source.skipped),
                   "the injected messages ran")
        assert app.count("sp/counter", source.skipped) is None
        # parked still parked, with its messages; skipping the failed one lets the two behind it run
        (parked,) = app.json("/parked")
        assert parked["address"] == "sp/fails/p1" and "told to fail" in parked["reason"]
        assert parked["waiting_messages"] == 3
        assert app.admin("POST", "/parked/sp/fails/p1/skip").status == 200
        wait_until(lambda: app.count("sp/fails", "p1") == 2, "p1's waiting messages ran")
        # delayed messages: pending with their due times and tokens, cancelled by token from their sender
        due = {(t[4], t[5]): t[0] for t in _rows(savepoint, "timers")}
        for id in SCHEDULERS:
            pending = {p["cancellation_token"]: p for p in app.json(f"/delayed/sp/scheduler/{id}")}
            assert pending["cancel"]["due_at_ms"] == due[(id, "cancel")]
            assert pending["cancel"]["target"] == f"sp/counter/cancel-{id}"
            assert app.send("sp/scheduler", id, b"cancel:cancel").status == 202
            wait_until(lambda id=id: "cancel" not in {p["cancellation_token"] for p in app.json(f"/delayed/sp/scheduler/{id}")},
                       f"{id}'s cancel is cancelled")
        wait_until(lambda: all(app.count("sp/counter", f"fire-{id}") == 1 for id in SCHEDULERS),
                   "the delayed messages fire", timeout=DELAYS_MS["fire"] / 1000 + 60)
        # the idempotency record: a retry is not applied again (a message after it is)
        assert app.send("sp/counter", "idem", b"tick", key="once", worker=1).status == 202
        assert app.send("sp/counter", "idem", b"tick").status == 202
        wait_until(lambda: app.count("sp/counter", "idem") == 2, "the message after the retry ran")
        # the dead letter, and the one skipped
        wait_until(lambda: [d["target"] for d in app.json("/dead-letters")] == ["sp/unknown/x", "sp/fails/p1"],
                   "the dead letters")
        time.sleep(1)  # nothing more arrives
        assert app.count("sp/counter", "idem") == 2
        assert all(app.count("sp/counter", key) == 5 for key in KEYS)
        assert all(app.count("sp/counter", f"cancel-{id}") is None for id in SCHEDULERS)
    finally:
        app.stop()


def test_restore_is_refused_into_an_application_that_exists(source, savepoint, restored):
    for app, what in ((source.app.name, "its consumer group"), (restored.name, "its consumer group")):
        with pytest.raises(SavepointError) as refused:
            kafka_savepoints.restore(str(savepoint), source.bootstrap, app, TARGET_PARTITIONS, source.module)
        assert f"application {app} exists ({what}" in str(refused.value)
        assert "restore into a new --app name" in str(refused.value)
    # topics with data but no group offsets (a source that never committed): refused by the data
    name = unique("sp-data")
    create_topics(source.bootstrap, f"{name}.state", partitions=TARGET_PARTITIONS)
    produce(source.bootstrap, f"{name}.state", [(b"s\x00sp/counter\x00x\x00count", b"")])
    with pytest.raises(SavepointError, match=f"application {name} exists \\(topic {name}.state holds data\\)"):
        kafka_savepoints.restore(str(savepoint), source.bootstrap, name, TARGET_PARTITIONS, source.module)


def test_restore_is_refused_for_positions_of_an_ingress_the_module_lacks(source, savepoint, tmp_path):
    module = tmp_path / "module.yaml"
    module.write_text(source.module_path.read_text().replace("id: sp/in", "id: sp/other"))
    with pytest.raises(SavepointError, match="positions of Kafka ingress sp/in, which .* does not define"):
        kafka_savepoints.restore(str(savepoint), source.bootstrap, unique("sp-c"), TARGET_PARTITIONS,
                                 load_module(module, env={"INGRESS_PORT": "1"}))


def test_a_damaged_savepoint_is_refused_and_nothing_is_created(source, savepoint, tmp_path):
    damaged = tmp_path / "damaged.savepoint"
    damaged.write_bytes(savepoint.read_bytes())
    with sqlite3.connect(damaged) as db:  # one state value changed, the counts intact
        db.execute("UPDATE state SET value = X'00' WHERE rowid = 1")
    truncated = tmp_path / "truncated.savepoint"
    truncated.write_bytes(savepoint.read_bytes()[:4096])
    admin = AdminClient({"bootstrap.servers": source.bootstrap})
    for path, expected in ((damaged, "do not match the manifest's checksum"), (truncated, "damaged")):
        name = unique("sp-d")
        with pytest.raises(SavepointError, match=expected):
            kafka_savepoints.restore(str(path), source.bootstrap, name, TARGET_PARTITIONS, source.module)
        assert not {f"{name}.messages", f"{name}.state"} & set(admin.list_topics(timeout=30).topics)


def test_a_restore_killed_midway_is_completed_by_the_next(source, savepoint, tmp_path):
    """A restore killed before its commit leaves an open transaction and empty topics: the next restore
    into the same application fences it and completes."""
    name = unique("sp-e")
    prepare_topics(AdminClient({"bootstrap.servers": source.bootstrap}), name, TARGET_PARTITIONS)
    killed = Producer({"bootstrap.servers": source.bootstrap, "transactional.id": kafka_savepoints.restore_transactional_id(name),
                       "transaction.timeout.ms": 600_000})
    killed.init_transactions(30)
    killed.begin_transaction()
    killed.produce(f"{name}.state", b"half", b"s\x00sp/counter\x00half\x00count", 0)
    killed.flush(30)  # and then nothing: as if killed
    kafka_savepoints.restore(str(savepoint), source.bootstrap, name, TARGET_PARTITIONS, source.module)
    again = tmp_path / "e.savepoint"
    kafka_savepoints.take(str(again), source.bootstrap, name, source.module)
    assert sorted(_rows(again, "state")) == sorted(_rows(savepoint, "state"))


def test_take_of_an_application_that_does_not_exist_is_refused(source, tmp_path):
    with pytest.raises(SavepointError, match="there is no application sp-nothing-here on"):
        kafka_savepoints.take(str(tmp_path / "x.savepoint"), source.bootstrap, "sp-nothing-here")


EGRESS_MODULE = """\
kind: io.statefun.kafka.v1/egress
spec:
  id: sp/out
  address: BOOTSTRAP
  deliverySemantic:
    type: exactly-once
    transactionTimeout: 1min
---
kind: io.statefun.playground.v1/egress
spec:
  port: 1
  topics: [greetings]
"""


def _egress_savepoint(path: Path, rows: list[EgressRow]) -> Path:
    writer = SavepointWriter(path)
    writer.write(rows)
    writer.finish(application="embedded-app", source_backend="embedded", partitions=8, mode="offline",
                  created_ms=int(time.time() * 1000))
    return path


def test_egress_records_of_an_embedded_savepoint_go_to_their_topics(kafka_bootstrap, tmp_path):
    """Kafka egress records an embedded application committed and had not forwarded yet are produced to
    their topics with the restore's transaction; a playground egress's cannot be restored here."""
    out = unique("sp-out")
    create_topics(kafka_bootstrap, out, partitions=1)
    path = tmp_path / "module.yaml"
    path.write_text(EGRESS_MODULE.replace("BOOTSTRAP", kafka_bootstrap))
    module = load_module(path)
    records_ = [KafkaProducerRecord(topic=out, key="k1", value_bytes=b"first"), KafkaProducerRecord(topic=out, value_bytes=b"second")]
    savepoint = _egress_savepoint(tmp_path / "egress.savepoint",
                                  [EgressRow("sp/out", out, record.SerializeToString(), "kafka") for record in records_]
                                  + [EgressRow("sp/out", out, b"third", "playground")])
    kafka_savepoints.restore(str(savepoint), kafka_bootstrap, unique("sp-f"), 2, module)
    # a playground record (from an embedded application whose egress sp/out was a playground one) has no key
    assert [(r.key(), r.value()) for r in read_all(kafka_bootstrap, out, 3)] == [(b"k1", b"first"), (None, b"second"),
                                                                              (None, b"third")]

    playground = _egress_savepoint(tmp_path / "playground.savepoint",
                                   [EgressRow("io.statefun.playground/egress", "greetings", b"hello", "playground")])
    with pytest.raises(SavepointError, match="egress io.statefun.playground/egress, which the Kafka backend does not have"):
        kafka_savepoints.restore(str(playground), kafka_bootstrap, unique("sp-g"), 2, module)
    path.write_text(EGRESS_MODULE.replace("BOOTSTRAP", kafka_bootstrap).replace("sp/out", "sp/other"))
    with pytest.raises(SavepointError, match="egress sp/out, which .* does not define"):
        kafka_savepoints.restore(str(savepoint), kafka_bootstrap, unique("sp-h"), 2, load_module(path))


def test_a_restore_into_a_broker_that_just_started_waits_for_its_group_coordinator(tmp_path):
    """A broker that just started answers group lookups with COORDINATOR_LOAD_IN_PROGRESS and
    NOT_COORDINATOR for a moment; the restore's first step (is the application running?) asks again
    instead of failing with 'ConsumerGroupDescribe: '."""
    from pystatefun.config.model import Module
    from pystatefun.savepoints.format import StateRow
    from support.kafka import KafkaCluster

    value = TypedValue(typename="io.statefun.types/int", has_value=True, value=b"\x08\x07").SerializeToString()
    writer = SavepointWriter(tmp_path / "fresh.savepoint")
    writer.write([StateRow("sp/counter", "k1", "count", value, None)])
    writer.finish(application="embedded-app", source_backend="embedded", partitions=8, mode="offline",
                  created_ms=int(time.time() * 1000))
    with KafkaCluster(nodes=1, workdir=tmp_path / "kafka") as cluster:
        kafka_savepoints.restore(str(tmp_path / "fresh.savepoint"), cluster.bootstrap_servers, "fresh", 2,
                                 Module(path=tmp_path / "module.yaml"))
        kafka_savepoints.take(str(tmp_path / "again.savepoint"), cluster.bootstrap_servers, "fresh")
    assert _rows(tmp_path / "again.savepoint", "state") == _rows(tmp_path / "fresh.savepoint", "state")
