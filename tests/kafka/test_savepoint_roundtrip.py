"""The savepoint round trip across backends and partition counts (issue 21's property test).

A random application is written directly as a savepoint file (SavepointWriter, seeded: no workers run,
this checks the savepoint paths and nothing else), then carried along

    original -> embedded P=8 -> Kafka P=3 -> Kafka P=16 -> embedded (the savepoint's count, 16)

restoring into each backend and taking a savepoint of it again. After every step the savepoint is compared
with the original table by table, field by field, through one normaliser that says exactly what may
differ (``EXPECTED DIFFERENCES`` below), and the restored data is checked to be where the runtime looks
for it: the embedded database's partition columns and the Kafka partitions of ``<app>.state`` and
``<app>.messages`` are ``partition_of(id, P)`` of their address.

EXPECTED DIFFERENCES (everything else must be identical, byte for byte):

* row order of the tables whose order means nothing: ``state``, ``timers``, ``parked``, ``idempotency``,
  ``function_specs``, ``ingress_positions`` (compared as sets/multisets; timers have no id in the format).
* ``messages``: the order across targets may change on Kafka (one order per partition), but every
  target's messages are identical and in the identical order. Restored into and taken from the embedded
  backend, the whole table keeps its order.
* ``dead_letters`` and ``egress`` keep their order.
* ``function_specs``: the Kafka backend keeps none (docs/savepoints.md, savepoints/kafka.py): empty in
  every savepoint after a Kafka step. Asserted, not ignored.
* ``egress``: a restore into Kafka writes the records to their topics (checked there, in order) and a
  Kafka savepoint holds none: empty in every savepoint after a Kafka step. Asserted, not ignored.
* the manifest: source backend, application, partitions, mode, time; the counts follow the rows.
"""

from __future__ import annotations

import collections
import json
import random
import sqlite3
import typing
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from kafka.harness import create_topics, produce, unique
from pystatefun.backends.kafka import records
from pystatefun.config import load_module
from pystatefun.runtime.envelope import partition_of
from pystatefun.savepoints import embedded as embedded_savepoints
from pystatefun.savepoints import kafka as kafka_savepoints
from pystatefun.savepoints.format import (
    TABLES,
    DeadLetterRow,
    EgressRow,
    IdempotencyRow,
    MessageRow,
    ParkedRow,
    PositionRow,
    SavepointReader,
    SavepointWriter,
    SpecRow,
    StateRow,
    TimerRow,
)
from pystatefun.wire.kafka_egress_pb2 import KafkaProducerRecord
from pystatefun.wire.log_pb2 import LogMessage, TimerValue
from pystatefun.wire.request_reply_pb2 import TypedValue

SEEDS = (1, 2)  # about 30 s each, most of it taking the Kafka savepoints
NOW_MS = 1_900_000_000_000  # "the future": expiries after it are live for decades
FAR = NOW_MS + 10 * 365 * 86_400_000

LOCAL_TYPES = ("rt/counter", "rt/cart", "rt.deep.ns/user", "rt/zähler")  # bound embedded in the module
REMOTE_TYPES = ("rtremote/greeter", "rtremote/sub/ns/fn")  # bound to an HTTP endpoint
TYPES = LOCAL_TYPES + REMOTE_TYPES
STATE_NAMES = ("count", "seen", "items", "ünïcode_näme", "blob")
# a remote function's state specs (the only kind a savepoint keeps)
SPECS = [SpecRow("rtremote/greeter", "seen", "io.statefun.types/int", 0, 0),
         SpecRow("rtremote/greeter", "name", "io.statefun.types/string", 1, 60_000),
         SpecRow("rtremote/sub/ns/fn", "blob", "rt/Blob", 2, 3_600_000)]

MODULE = """\
kind: pystatefun.v1/embedded
spec:
  functions: rt/*
  module: roundtrip_functions:functions
---
kind: pystatefun.v1/embedded
spec:
  functions: rt.deep.ns/*
  module: roundtrip_functions:functions
---
kind: io.statefun.endpoints.v2/http
spec:
  functions: rtremote/*
  urlPathTemplate: http://127.0.0.1:9/{function.name}
---
kind: io.statefun.kafka.v1/ingress
spec:
  id: rt/in
  address: BOOTSTRAP
  consumerGroupId: GROUP1
  topics:
    - topic: TOPIC1
      valueType: rt/tick
      targets: [rt/counter]
    - topic: TOPIC2
      valueType: rt/tick
      targets: [rt/cart]
---
kind: io.statefun.kafka.v1/ingress
spec:
  id: rt/in-two
  address: BOOTSTRAP
  consumerGroupId: GROUP2
  topics:
    - topic: TOPIC3
      valueType: rt/tick
      targets: [rtremote/greeter]
---
kind: io.statefun.kafka.v1/egress
spec:
  id: rt/out
  address: BOOTSTRAP
  deliverySemantic:
    type: exactly-once
    transactionTimeout: 1min
"""

# ---------------------------------------------------------------------------------------------------------
# the random application


def _typed(typename: str, value: bytes, has_value: bool = True) -> bytes:
    return TypedValue(typename=typename, has_value=has_value, value=value).SerializeToString()


_ID_PIECES = ("a", "b", "z", "0", "9", "/", "//", "-", "_", ".", " ", "%2F", "?", "#", "é", "ß", "Ω", "ж", "中文",
              "日本", "🙂", "👩‍💻", "e\u0301", "\u200f", "عربى", "\t", "\n", "'", '"', "\\", "\x01", "~")


def _random_id(rng: random.Random, n: int) -> str:
    """Ids with unicode (combining marks, emoji, RTL, CJK), '/' anywhere, and a unique tail."""
    pieces = rng.choices(_ID_PIECES, k=rng.randint(0, 5))
    return "".join(pieces) + f"{n}" + ("/" if rng.random() < 0.1 else "")


def _random_value(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.03:
        return b""  # an empty serialized TypedValue
    if kind < 0.08:
        return _typed("rt/Empty", b"")  # an empty value
    if kind < 0.12:
        return _typed("rt/Nothing", b"", has_value=False)
    if kind < 0.40:
        return _typed("io.statefun.types/int", rng.randbytes(4))
    if kind < 0.60:
        return _typed("io.statefun.types/string", "".join(rng.choices(_ID_PIECES, k=rng.randint(1, 30))).encode())
    if kind < 0.80:
        return _typed("rt/Json", json.dumps({"n": rng.random(), "s": "ü" * rng.randint(0, 50)}).encode())
    if kind < 0.995:
        return _typed("rt/Raw", rng.randbytes(rng.randint(1, 4000)))
    return _typed("rt/Large", rng.randbytes(rng.randint(50_000, 200_000)))


class Application(typing.NamedTuple):
    tables: dict[str, list]  # table -> rows, in the order written
    topics: dict[str, int]  # ingress topic -> partitions
    egress_topics: list[str]


def generate(seed: int, ingress_topics: dict[str, str]) -> Application:
    """A random application. ``ingress_topics`` maps the module's placeholders TOPIC1.. to real names."""
    rng = random.Random(seed)
    tables: dict[str, list] = {table: [] for table in TABLES}
    n_addresses = rng.randint(2500, 3500)
    addresses, ids = [], set()
    for n in range(n_addresses):
        typename = rng.choice(TYPES)
        id = _random_id(rng, n)
        if id in ids:  # "9" + "1" and "" + "91"
            continue
        ids.add(id)
        addresses.append((typename, id))
        if rng.random() < 0.05:  # several function types share an id (one partition)
            addresses.append((rng.choice([t for t in TYPES if t != typename]), id))

    for typename, id in addresses:
        if rng.random() < 0.15:
            continue  # an address with messages but no state
        for name in rng.sample(STATE_NAMES, rng.randint(1, 3)):
            expire_at = None if rng.random() < 0.7 else FAR + rng.randint(0, 10**9)
            tables["state"].append(StateRow(typename, id, name, _random_value(rng), expire_at))
    rng.shuffle(tables["state"])

    # messages, some targets with many in a known order; from outside, from local and remote functions
    for _ in range(rng.randint(2500, 3500)):
        target = rng.choice(addresses) if rng.random() < 0.9 else rng.choice(addresses[:20])  # a few busy ones
        caller = None if rng.random() < 0.4 else rng.choice(addresses)
        tables["messages"].append(MessageRow(target[0], target[1], caller and caller[0], caller and caller[1],
                                             _random_value(rng)))

    tokens_used: set[tuple[str, str, str]] = set()
    for _ in range(rng.randint(300, 600)):
        target = rng.choice(addresses)
        caller = None if rng.random() < 0.1 else rng.choice(addresses)
        token = None
        if caller is not None and rng.random() < 0.6:
            token = rng.choice(("fire", "cancel", "tök€n", f"t{rng.randint(0, 10**6)}"))
            if (caller[0], caller[1], token) in tokens_used:  # tokens are unique per sender
                token = None
            else:
                tokens_used.add((caller[0], caller[1], token))
        tables["timers"].append(TimerRow(NOW_MS + rng.randint(-60_000, 10**8), target[0], target[1],
                                         caller and caller[0], caller and caller[1], token, _random_value(rng)))

    for typename, id in rng.sample(addresses, rng.randint(50, 150)):
        tables["parked"].append(ParkedRow(typename, id, rng.choice((
            "the function raised: RuntimeError('told to fail')", "HTTP 500 from http://127.0.0.1:9/fn",
            "ünïcode reason / with slashes\nand a newline"))))

    for n in range(rng.randint(100, 300)):
        caller = None if rng.random() < 0.3 else rng.choice(addresses)
        if rng.random() < 0.2:  # a type no function has (an egress that is not defined): no target id
            target_type, target_id = rng.choice(("rt/no-such-egress", "rtremote/nope")), ""
        else:
            target_type, target_id = rng.choice(("rt/unknown", "other.ns/unknown")), _random_id(rng, n)
        tables["dead_letters"].append(DeadLetterRow(target_type, target_id, caller and caller[0], caller and caller[1],
                                                    _random_value(rng), rng.choice(("no function", "expired ⌛", "")),
                                                    NOW_MS - rng.randint(0, 10**9)))

    keys = {f"{rng.choice(('io.statefun.playground/ingress', 'rt/ingress'))}:{_random_id(rng, n)}"
            for n in range(rng.randint(100, 200))}
    for key in sorted(keys):
        tables["idempotency"].append(IdempotencyRow(
            key, FAR + rng.randint(0, 10**9), rng.choice((200, 202, 404, 500)),
            rng.choice((b"", b"accepted", rng.randbytes(rng.randint(1, 300)))),
            rng.choice(("", "application/json", "text/plain; charset=utf-8")),
            rng.choice(("", f"sha256:{rng.randbytes(32).hex()}"))))

    rng.shuffle(tables["idempotency"])  # not in key order, as a Kafka savepoint has them
    tables["function_specs"] = list(SPECS)

    # positions: TOPIC1 and TOPIC3 in every partition, TOPIC2 only in partition 1 (never read from 0)
    topics = {ingress_topics["TOPIC1"]: 3, ingress_topics["TOPIC2"]: 2, ingress_topics["TOPIC3"]: 4}
    for ingress, placeholder, partitions in (("rt/in", "TOPIC1", range(3)), ("rt/in", "TOPIC2", [1]),
                                             ("rt/in-two", "TOPIC3", range(4))):
        for p in partitions:
            tables["ingress_positions"].append(PositionRow(ingress, ingress_topics[placeholder], p, rng.randint(0, 20)))

    egress_topics = [f"{ingress_topics['TOPIC1']}-out-a", f"{ingress_topics['TOPIC1']}-out-b"]
    for n in range(rng.randint(20, 60)):
        topic = rng.choice(egress_topics)
        record = KafkaProducerRecord(topic=topic, key=rng.choice(("", f"k{n}", "ключ")), value_bytes=rng.randbytes(rng.randint(0, 200)))
        tables["egress"].append(EgressRow("rt/out", topic, record.SerializeToString(), "kafka"))
    return Application(tables, topics, egress_topics)


def write_savepoint(path: Path, tables: dict[str, list]) -> None:
    writer = SavepointWriter(path)
    for table in TABLES:
        writer.write(tables[table])
    writer.finish(application="generated", source_backend="embedded", partitions=8, mode="offline", created_ms=NOW_MS)


def read_savepoint(path: Path) -> tuple[typing.Any, dict[str, list]]:
    with SavepointReader(path) as reader:
        reader.verify()
        return reader.manifest, {table: list(reader.rows(table)) for table in TABLES}


# ---------------------------------------------------------------------------------------------------------
# the normaliser and the comparison


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:150] + f"... ({len(text)} chars)"


def _dict_diff(table: str, before: dict, after: dict) -> list[str]:
    problems = []
    for key in before.keys() - after.keys():
        problems.append(f"{table}: {_short(key)} is missing; it was {_short(before[key])}")
    for key in after.keys() - before.keys():
        problems.append(f"{table}: {_short(key)} appeared: {_short(after[key])}")
    for key in before.keys() & after.keys():
        if before[key] != after[key]:
            problems.append(f"{table}: {_short(key)} changed: before {_short(before[key])}, after {_short(after[key])}")
    return problems


def _unique_map(table: str, rows: list, key: typing.Callable, value: typing.Callable) -> dict:
    found: dict = {}
    for row in rows:
        k = key(row)
        assert k not in found, f"{table}: {_short(k)} is in the savepoint twice: {_short(found[k])} and {_short(value(row))}"
        found[k] = value(row)
    return found


def _per_target(rows: list[MessageRow]) -> dict[tuple[str, str], list[tuple]]:
    targets: dict[tuple[str, str], list[tuple]] = collections.defaultdict(list)
    for row in rows:
        targets[(row.target_type, row.target_id)].append((row.caller_type, row.caller_id, row.value))
    return dict(targets)


def _list_diff(table: str, before: list, after: list) -> list[str]:
    if before == after:
        return []
    for i, (b, a) in enumerate(zip(before, after)):
        if b != a:
            return [f"{table}: row {i} differs (of {len(before)} before, {len(after)} after): before {_short(b)}, "
                    f"after {_short(a)}"]
    return [f"{table}: {len(before)} rows before, {len(after)} after; first extra/missing: "
            f"{_short((before + after)[min(len(before), len(after))])}"]


def differences(original: dict[str, list], taken: dict[str, list], *, after_kafka: bool,
                whole_message_order: bool) -> list[str]:
    """What differs between two savepoints' rows beyond EXPECTED DIFFERENCES (module docstring)."""
    problems: list[str] = []
    problems += _dict_diff("state",
                           _unique_map("state", original["state"], lambda r: r[:3], lambda r: (r.value, r.expire_at)),
                           _unique_map("state", taken["state"], lambda r: r[:3], lambda r: (r.value, r.expire_at)))
    before, after = _per_target(original["messages"]), _per_target(taken["messages"])
    for target in before.keys() | after.keys():
        problems += _list_diff(f"messages of {_short(target)}", before.get(target, []), after.get(target, []))
    if whole_message_order:
        problems += _list_diff("messages (the whole table's order, kept by the embedded backend)",
                               original["messages"], taken["messages"])
    timers_before, timers_after = collections.Counter(original["timers"]), collections.Counter(taken["timers"])
    for row in (timers_before - timers_after).elements():
        problems.append(f"timers: missing {_short(row)}")
    for row in (timers_after - timers_before).elements():
        problems.append(f"timers: appeared {_short(row)}")
    problems += _dict_diff("parked", _unique_map("parked", original["parked"], lambda r: r[:2], lambda r: r.reason),
                           _unique_map("parked", taken["parked"], lambda r: r[:2], lambda r: r.reason))
    problems += _list_diff("dead_letters", original["dead_letters"], taken["dead_letters"])
    problems += _dict_diff("idempotency", _unique_map("idempotency", original["idempotency"], lambda r: r.key, tuple),
                           _unique_map("idempotency", taken["idempotency"], lambda r: r.key, tuple))
    if after_kafka:  # documented: the Kafka backend keeps no specs, and its egress records are in their topics
        assert taken["function_specs"] == [], f"function_specs after a Kafka step: {_short(taken['function_specs'])}"
        assert taken["egress"] == [], f"egress after a Kafka step: {_short(taken['egress'])}"
    else:
        problems += _dict_diff("function_specs",
                               _unique_map("function_specs", original["function_specs"], lambda r: r[:2], tuple),
                               _unique_map("function_specs", taken["function_specs"], lambda r: r[:2], tuple))
        problems += _list_diff("egress", original["egress"], taken["egress"])
    problems += _dict_diff("ingress_positions",
                           _unique_map("ingress_positions", original["ingress_positions"], lambda r: r[:3], lambda r: r[3]),
                           _unique_map("ingress_positions", taken["ingress_positions"], lambda r: r[:3], lambda r: r[3]))
    return problems


def assert_same(step: str, original: dict[str, list], taken: dict[str, list], **expect: bool) -> None:
    problems = differences(original, taken, **expect)
    assert not problems, f"{step}: {len(problems)} difference(s) from the original:\n" + "\n".join(problems[:25])


def check_manifest(step: str, manifest, rows: dict[str, list], backend: str, application: str, partitions: int,
                   mode: str) -> None:
    assert (manifest.source_backend, manifest.application, manifest.partitions, manifest.mode) == \
        (backend, application, partitions, mode), f"{step}: manifest {manifest}"
    assert manifest.counts == {table: len(rows[table]) for table in TABLES}, f"{step}: counts {manifest.counts}"


# ---------------------------------------------------------------------------------------------------------
# where the restored rows are


def check_embedded_placement(step: str, data_dir: Path, partitions: int) -> None:
    """Every row of the restored database in the partition of its address (a timer: of its sender, which
    owns its cancellation token, as the runtime puts it; without a sender, of its target)."""
    with sqlite3.connect(f"file:{data_dir / embedded_savepoints.DATABASE_NAME}?mode=ro", uri=True) as db:
        assert dict(db.execute("SELECT key, value FROM meta"))["partitions"] == str(partitions), step
        wrong = []
        for typename, id, name, partition in db.execute("SELECT typename, id, name, partition FROM state"):
            if partition != partition_of(id, partitions):
                wrong.append(f"state {typename} {id!r} {name}: partition {partition}, not {partition_of(id, partitions)}")
        for seq, typename, id, partition in db.execute("SELECT seq, target_type, target_id, partition FROM inbox"):
            if partition != partition_of(id, partitions):
                wrong.append(f"inbox seq {seq} to {typename} {id!r}: partition {partition}, not {partition_of(id, partitions)}")
        for timer_id, target_id, caller_type, caller_id, partition in db.execute(
                "SELECT timer_id, target_id, caller_type, caller_id, partition FROM timers"):
            owner = caller_id if caller_type is not None else target_id
            if partition != partition_of(owner, partitions):
                wrong.append(f"timer {timer_id} of sender {caller_type} {caller_id!r} to {target_id!r}: partition "
                             f"{partition}, not {partition_of(owner, partitions)} (its sender's)")
    assert not wrong, f"{step}: {len(wrong)} row(s) in the wrong partition:\n" + "\n".join(wrong[:20])


def read_topic(bootstrap: str, topic: str, partitions: int) -> list[list]:
    """The committed records of every partition of ``topic`` (read_committed), each in offset order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("rt-reader"),
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    found: list[list] = [[] for _ in range(partitions)]
    try:
        ends, assigned = {}, []
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30, cached=False)
            if low < high:
                ends[p] = high
                assigned.append(TopicPartition(topic, p, low))
        consumer.assign(assigned)
        while ends:
            for record in consumer.consume(10_000, 0.1):
                assert record.error() is None, record.error()
                found[record.partition()].append(record)
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:  # past the last record and its transaction marker
                    del ends[tp.partition]
    finally:
        consumer.close()
    return found


def check_kafka_placement(step: str, bootstrap: str, app: str, partitions: int, original: dict[str, list]) -> None:
    """Every changelog record and message in the partition of its address; idempotency records in every
    partition once (a savepoint does not know their address); each target's messages in order."""
    wrong: list[str] = []
    idempotency: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    messages: dict[tuple[str, str], list[tuple]] = collections.defaultdict(list)
    counts = collections.Counter()
    state_topic, messages_topic = read_topic(bootstrap, f"{app}.state", partitions), \
        read_topic(bootstrap, f"{app}.messages", partitions)
    for p in range(partitions):
        for record in state_topic[p]:
            kind, *names = record.key().decode().split(records.SEP)
            counts[kind] += 1
            if kind in ("s", "p"):
                expected = partition_of(names[1], partitions)
            elif kind == "t":
                timer = TimerValue.FromString(record.value()).message
                owner = timer.caller.id if timer.HasField("caller") else timer.target.id
                expected = partition_of(owner, partitions)
            elif kind == "i":
                idempotency[names[0]][p] += 1
                continue
            else:
                wrong.append(f"{app}.state/{p}: a record of kind {kind!r} from a restore")
                continue
            if p != expected:
                wrong.append(f"{app}.state/{p}: {kind} record {names!r} belongs in partition {expected}")
        for record in messages_topic[p]:
            message = LogMessage.FromString(record.value())
            counts["messages"] += 1
            if record.key() != message.target.id.encode():
                wrong.append(f"{app}.messages/{p}@{record.offset()}: key {record.key()!r}, target id {message.target.id!r}")
            if p != partition_of(message.target.id, partitions):
                wrong.append(f"{app}.messages/{p}@{record.offset()}: to {message.target.id!r}, which is in partition "
                             f"{partition_of(message.target.id, partitions)}")
            caller = message.caller if message.HasField("caller") else None
            messages[(f"{message.target.namespace}/{message.target.type}", message.target.id)].append(
                (None if caller is None else f"{caller.namespace}/{caller.type}", None if caller is None else caller.id,
                 message.value.SerializeToString()))
    for key, per_partition in idempotency.items():
        if per_partition != collections.Counter(range(partitions)):
            wrong.append(f"idempotency record {key!r}: copies per partition {dict(per_partition)}, not one in each")
    assert not wrong, f"{step}: {len(wrong)} misplaced record(s):\n" + "\n".join(wrong[:20])
    assert (counts["s"], counts["t"], counts["p"], len(idempotency), counts["messages"]) == (
        len(original["state"]), len(original["timers"]), len(original["parked"]), len(original["idempotency"]),
        len(original["messages"])), f"{step}: record counts {dict(counts)}, idempotency keys {len(idempotency)}"
    problems = []
    expected_messages = _per_target(original["messages"])
    for target in expected_messages.keys() | messages.keys():
        problems += _list_diff(f"{app}.messages of {_short(target)}", expected_messages.get(target, []),
                               messages.get(target, []))
    assert not problems, f"{step}: messages in the topic differ:\n" + "\n".join(problems[:20])


def check_egress_topics(step: str, bootstrap: str, application: Application) -> None:
    """A restore into Kafka produced the embedded savepoint's egress records, each topic's in order."""
    for topic in application.egress_topics:
        expected = [KafkaProducerRecord.FromString(row.payload) for row in application.tables["egress"] if row.topic == topic]
        (found,) = read_topic(bootstrap, topic, 1)
        assert [(r.key(), r.value() or b"") for r in found] == \
            [(e.key.encode() if e.key else None, e.value_bytes) for e in expected], f"{step}: egress topic {topic}"


# ---------------------------------------------------------------------------------------------------------
# the tests


def check_coverage(tables: dict[str, list]) -> None:
    """The generated application has every case the round trip is to carry (so the generator cannot
    silently lose one)."""
    state, messages, timers = tables["state"], tables["messages"], tables["timers"]
    assert len({row[:2] for row in state}) >= 2000 and {row.typename for row in state} == set(TYPES)
    assert any(row.value == b"" for row in state) and any(row.expire_at for row in state)
    assert any(len(row.value) > 50_000 for row in state)
    assert any("/" in row.id for row in state) and any(not row.id.isascii() for row in state)
    types_per_id = collections.Counter(id for _, id in {row[:2] for row in state})
    assert max(types_per_id.values()) >= 2  # function types sharing an id (and its partition)
    per_target = collections.Counter(row[:2] for row in messages)
    assert max(per_target.values()) >= 10 and len(per_target) >= 1000
    assert {row.caller_type for row in messages} >= {None, *LOCAL_TYPES, *REMOTE_TYPES}
    assert {row.target_type for row in messages} >= {*LOCAL_TYPES, *REMOTE_TYPES}
    assert {(row.caller_type is None, row.token is None) for row in timers} == {(True, True), (False, True), (False, False)}
    assert tables["parked"] and tables["idempotency"] and tables["function_specs"] and tables["egress"]
    assert any(row.target_id == "" for row in tables["dead_letters"])
    assert any(row.caller_type is None for row in tables["dead_letters"])
    assert len(tables["ingress_positions"]) == 8


def test_the_comparison_sees_what_must_not_change():
    """The normaliser forgives only EXPECTED DIFFERENCES: each other change of one field is reported,
    naming the table and the row."""
    tables = generate(7, {"TOPIC1": "t1", "TOPIC2": "t2", "TOPIC3": "t3"}).tables
    check_coverage(tables)

    def changed(table: str, change: typing.Callable[[list], None]) -> dict[str, list]:
        copy = {name: list(rows) for name, rows in tables.items()}
        change(copy[table])
        return copy

    def swap_first_two_of_a_target(rows: list) -> None:
        busy = collections.Counter(row[:2] for row in rows).most_common(1)[0][0]
        i, j = [n for n, row in enumerate(rows) if row[:2] == busy][:2]
        rows[i], rows[j] = rows[j], rows[i]

    def swap_targets(rows: list) -> None:  # two messages of different targets: allowed on Kafka
        i = next(n for n in range(len(rows) - 1) if rows[n][:2] != rows[n + 1][:2])
        rows[i], rows[i + 1] = rows[i + 1], rows[i]

    forgiven = dict(after_kafka=False, whole_message_order=False)
    assert differences(tables, tables, **forgiven) == []
    reordered = {name: list(reversed(rows)) if name in ("state", "timers", "parked", "idempotency", "function_specs",
                                                         "ingress_positions") else rows for name, rows in tables.items()}
    assert differences(tables, reordered, **forgiven) == []
    assert differences(tables, changed("messages", swap_targets), **forgiven) == []
    assert differences(tables, changed("messages", swap_targets), after_kafka=False, whole_message_order=True)
    cases = {
        "state": lambda rows: rows.__setitem__(5, rows[5]._replace(expire_at=(rows[5].expire_at or 0) + 1)),
        "messages of": swap_first_two_of_a_target,
        "timers": lambda rows: rows.__setitem__(3, rows[3]._replace(token="other")),
        "parked": lambda rows: rows.pop(),
        "dead_letters": lambda rows: rows.insert(0, rows.pop()),
        "idempotency": lambda rows: rows.__setitem__(0, rows[0]._replace(body=b"x" + rows[0].body)),
        "function_specs": lambda rows: rows.__setitem__(0, rows[0]._replace(ttl_ms=1)),
        "egress": lambda rows: rows.insert(0, rows.pop()),
        "ingress_positions": lambda rows: rows.__setitem__(0, rows[0]._replace(next_offset=rows[0].next_offset + 1)),
    }
    for table, change in cases.items():
        found = differences(tables, changed(table.split()[0], change), **forgiven)
        assert found and all(problem.startswith(table) for problem in found), (table, found)
    # after a Kafka step, specs and egress records must be gone (not merely ignored)
    with pytest.raises(AssertionError, match="function_specs after a Kafka step"):
        differences(tables, tables, after_kafka=True, whole_message_order=False)
    gone = {**tables, "function_specs": [], "egress": []}
    assert differences(tables, gone, after_kafka=True, whole_message_order=False) == []



@pytest.mark.parametrize("seed", SEEDS)
def test_round_trip_across_backends_and_partition_counts(seed, kafka_bootstrap, tmp_path):
    bootstrap = kafka_bootstrap
    names = {f"TOPIC{n}": unique(f"rt{seed}-in{n}") for n in (1, 2, 3)}
    application = generate(seed, names)
    create_topics(bootstrap, *application.egress_topics, partitions=1)
    for topic, partitions in application.topics.items():
        create_topics(bootstrap, topic, partitions=partitions)
        # records to be positioned in: every saved position is at most the partition's end
        produce(bootstrap, topic, [(None, b"tick", p) for p in range(partitions) for _ in range(20)])
    module_path = tmp_path / "module.yaml"
    text = MODULE.replace("BOOTSTRAP", bootstrap).replace("GROUP1", unique("rt-g1")).replace("GROUP2", unique("rt-g2"))
    for placeholder, topic in names.items():
        text = text.replace(placeholder, topic)
    module_path.write_text(text)
    module = load_module(module_path, env={})

    original_path = tmp_path / "0-original.savepoint"
    write_savepoint(original_path, application.tables)
    _, original = read_savepoint(original_path)
    assert original == application.tables
    check_coverage(original)

    # 1. into the embedded backend, 8 partitions, and out again (offline)
    data_8 = tmp_path / "embedded-8"
    embedded_savepoints.restore(str(original_path), data_8, 8)
    check_embedded_placement("embedded P=8", data_8, 8)
    taken_1 = tmp_path / "1-embedded-8.savepoint"
    manifest, rows_1 = (embedded_savepoints.take_offline(data_8, str(taken_1)), read_savepoint(taken_1)[1])
    check_manifest("embedded P=8", manifest, rows_1, "embedded", "embedded-8", 8, "offline")
    assert_same("original -> embedded P=8", original, rows_1, after_kafka=False, whole_message_order=True)

    # 2. into a Kafka application of 3 partitions, and out again
    app_a = unique(f"rt{seed}-a")
    kafka_savepoints.restore(str(taken_1), bootstrap, app_a, 3, module)
    check_kafka_placement("Kafka P=3", bootstrap, app_a, 3, original)
    check_egress_topics("Kafka P=3", bootstrap, application)
    taken_2 = tmp_path / "2-kafka-3.savepoint"
    manifest = kafka_savepoints.take(str(taken_2), bootstrap, app_a, module)
    rows_2 = read_savepoint(taken_2)[1]
    check_manifest("Kafka P=3", manifest, rows_2, "kafka", app_a, 3, "stop")
    assert_same("original -> embedded P=8 -> Kafka P=3", original, rows_2, after_kafka=True, whole_message_order=False)

    # 3. into a Kafka application of 16 partitions, and out again
    app_b = unique(f"rt{seed}-b")
    kafka_savepoints.restore(str(taken_2), bootstrap, app_b, 16, module)
    check_kafka_placement("Kafka P=16", bootstrap, app_b, 16, original)
    taken_3 = tmp_path / "3-kafka-16.savepoint"
    manifest = kafka_savepoints.take(str(taken_3), bootstrap, app_b, module)
    rows_3 = read_savepoint(taken_3)[1]
    check_manifest("Kafka P=16", manifest, rows_3, "kafka", app_b, 16, "stop")
    assert_same("... -> Kafka P=16", original, rows_3, after_kafka=True, whole_message_order=False)

    # 4. back into the embedded backend with the savepoint's partition count (16), and out again
    data_back = tmp_path / "embedded-back"
    embedded_savepoints.restore(str(taken_3), data_back, None)
    check_embedded_placement("embedded (P=16, the savepoint's)", data_back, 16)
    taken_4 = tmp_path / "4-embedded-16.savepoint"
    manifest = embedded_savepoints.take_offline(data_back, str(taken_4))
    rows_4 = read_savepoint(taken_4)[1]
    check_manifest("embedded P=16", manifest, rows_4, "embedded", "embedded-back", 16, "offline")
    assert_same("... -> embedded P=16", original, rows_4, after_kafka=True, whole_message_order=False)
    # the embedded backend keeps the whole order of what it was given
    assert _list_diff("messages (embedded keeps the savepoint's order)", rows_3["messages"], rows_4["messages"]) == []
