"""Savepoints of the Kafka backend: stop-with-savepoint (``take``) and restore into a new application
(``restore``), both streamed in bounded memory.

**What a stopped application is in Kafka** (backends/kafka/store.py, worker.py). Each epoch of a worker is
one Kafka transaction with everything the epoch did: its changelog records in ``<app>.state`` (state
values, timers, parked addresses, idempotency records, and the partition's ``o`` record: the offsets
of ``<app>.messages`` at or after the committed offset whose messages were processed already), its
messages not processed yet in ``<app>.messages`` (for partitions of other workers, and its own that it
did not get to before the commit: ingress records, messages between functions, fired timers; a message
accepted and processed within one epoch is never written), its dead letters in ``<app>.dead-letters``,
its Kafka egress records in their topics, and the offsets: of ``<app>.messages`` for the group ``<app>``
(up to the first message whose effects are not committed) and of each Kafka ingress's topics for the
ingress's ``consumerGroupId`` (after the last record whose messages are in the epoch). A timer fires in
the epoch that writes its message, and that epoch's transaction also holds the timer's tombstone. A
worker stopped with SIGTERM commits its last epoch before it leaves the group; one that dies leaves an
open transaction that aborts (at the latest after the transaction timeout).

**Why the cut taken here is exactly-once.** ``take`` reads only once the group ``<app>`` has no member
(no worker runs, so no transaction can commit any more: one of a worker that left the group is refused
by the group's generation check) and no transaction is open on the application's topics (each
partition's last stable offset is its end). What ``read_committed`` readers see then is the sum of the
committed epochs, each all or nothing, so each message is in exactly one of two places: its effects are
in the changelog and its offset is below the committed offset or in the ``o`` record, or it is in
``<app>.messages`` at or after the committed offset and not in the ``o`` record, with none of its
effects anywhere. The savepoint holds the changelog's last value of every key and exactly the messages
of the second kind, each once, in offset order per partition (which is the order per address: all
messages of an address are in the partition of its id); a fired timer is either a pending timer (its
epoch did not commit) or a message, never both. Ingress positions are the committed offsets of the
ingresses' groups, written in the same transactions, so a record is either reflected in the state and
messages or after the position. After reading, ``take`` checks that nothing moved meanwhile (members,
end offsets, committed offsets) and refuses the savepoint otherwise: a worker started during the read
would have made it a mix of two cuts.

The changelog is read a partition at a time into a temporary SQLite file beside the savepoint (the last
value of each key; a compacted topic keeps older values until its cleaner passes), then written out;
idempotency records are kept once across partitions (a restore put one in every partition). Memory
stays bounded whatever the size of the application.

Kinesis positions are changelog records too (kind ``k``), and Kinesis egress records not put yet are
those of ``<app>.kinesis-egress`` after the committed offsets of its forwarders' group. Not in a Kafka
savepoint: Kafka egress records (on this backend they are in their topics with each epoch's transaction
already, nothing waits to be forwarded) and registered function specs (this backend keeps none: remote
functions negotiate them again).

**Restoring** writes everything in one Kafka transaction (producer ``pystatefun-<app>-restore``), with
the ingress positions committed for the ingresses' groups in the same transaction, so the new
application appears all at once or not at all; it returns once the transaction is readable (the broker
writes its markers after the commit returns). One transaction may last as long as the brokers'
``transaction.max.timeout.ms`` (15 minutes by default; ``transaction.timeout.ms`` in ``properties``
chooses less): a savepoint too large to restore in that time fails and leaves nothing behind.

Addresses go to ``partition_of(id, partitions)``, the runtime's hash: state values and parked addresses to their address's changelog partition, timers to
the changelog partition of their sender (which owns the cancellation token), with new unique ids
(1, 2, ...: a worker numbers its own from its start time in nanoseconds, far above), messages to their
target's partition of ``<app>.messages`` in savepoint order (so each address gets its messages in the
order it had them), dead letters to ``<app>.dead-letters``, Kinesis positions to their stream's changelog partition, egress
records (records committed but not forwarded or read yet) as the module's egress of their id keeps them:
a Kafka egress's to their topics, a Kinesis egress's to ``<app>.kinesis-egress`` by partition key
(EgressRow.payload_as converts a record to its egress's kind; an egress of another kind, or missing, is
refused), before anything the new application writes. A savepoint does not know the address an idempotency record belongs to, and the
Kafka backend keeps each in the changelog of its address's partition, so every record is written to every
partition (``partitions`` copies; they are small and expire with the idempotency-key TTL).

A restore killed midway leaves its transaction open, and nothing of it visible to ``read_committed``
readers (the workers). The transaction aborts after its timeout, or at once when a restore into the same
application starts again (same transactional id), which then finds the topics empty and completes. The
topics it created stay: a second restore must give the same partition count, or delete them first.
A restore that committed is marked (offset metadata of the group ``pystatefun-<app>-restored``, in the
same transaction) so that ``restored_from`` tells a restarted ``run --from-savepoint`` that it is done.
"""

from __future__ import annotations

import bisect
import logging
import contextlib
import json
import sqlite3
import tempfile
import time
import typing
from pathlib import Path

from pystatefun.backends.kafka import records
from pystatefun.backends.kafka.cluster import parse_client_id
from pystatefun.io.kafka import consume_batch
from pystatefun.backends.kafka.topics import TopicMismatchError, Topics, prepare_topics
from pystatefun.backends.kafka.worker import retrying
from pystatefun.config.model import KafkaEgress as KafkaEgressSpec
from pystatefun.config.model import KafkaIngress as KafkaIngressSpec
from pystatefun.config.model import KinesisEgress as KinesisEgressSpec
from pystatefun.config.model import KinesisIngress as KinesisIngressSpec
from pystatefun.config.model import Module
from pystatefun.runtime.envelope import address, partition_of
from pystatefun.runtime.epoch import DeadLetter
from pystatefun.savepoints import storage
from pystatefun.savepoints.format import (
    KAFKA_EGRESS,
    KINESIS_EGRESS,
    DeadLetterRow,
    EgressRow,
    IdempotencyRow,
    KinesisPositionRow,
    Manifest,
    MessageRow,
    ParkedRow,
    PositionRow,
    Progress,
    SavepointError,
    SavepointReader,
    SavepointWriter,
    StateRow,
    TimerRow,
)
from pystatefun.wire.fields import varint
from pystatefun.wire.kafka_egress_pb2 import KafkaProducerRecord
from pystatefun.wire.kinesis_egress_pb2 import KinesisEgressRecord
from pystatefun.wire.log_pb2 import IdempotencyValue, LogMessage, ParkedValue, StateValue, TimerValue
from pystatefun.wire.request_reply_pb2 import Address, TypedValue

if typing.TYPE_CHECKING:
    from confluent_kafka import Consumer, Message, Producer

REQUEST_TIMEOUT_SECONDS = 30  # one lookup (members, offsets, topics)
# How long a partition may hold read_committed readers back (an open transaction: of a worker that died,
# it aborts after the transaction timeout, 10 s, plus up to 10 s until the broker checks) before a take
# is refused, and how long a read may make no progress.
OPEN_TRANSACTION_WAIT_SECONDS = 60
STALLED_READ_SECONDS = 60
READ_BATCH = 10_000
PROGRESS_EVERY = 10_000
# the consumer reading partitions through: large fetches; a small buffer (librdkafka keeps 100,000
# records by default: its memory, not ours), topped up at once instead of after its default second of
# backoff; and no long poll at the end of a partition (the next partition's first fetch waits for it)
_READ_SETTINGS = {"max.partition.fetch.bytes": 4 * 1024 * 1024, "fetch.max.bytes": 8 * 1024 * 1024,
                  "queued.max.messages.kbytes": 16 * 1024, "fetch.wait.max.ms": 10,
                  "queued.min.messages": 20_000, "fetch.queue.backoff.ms": 5}
# the restore's producer: large batches; the transaction may last as long as the broker allows
_WRITE_SETTINGS = {"linger.ms": 20, "compression.type": "lz4", "queue.buffering.max.messages": 100_000,
                   "queue.buffering.max.kbytes": 64 * 1024, "batch.num.messages": 100_000}
DEFAULT_TRANSACTION_MAX_TIMEOUT_MS = 900_000  # the brokers' default transaction.max.timeout.ms
COMMIT_TIMEOUT_SECONDS = 600

log = logging.getLogger("pystatefun.savepoints")


def _client_config(bootstrap: str, properties: typing.Mapping[str, str] | None) -> dict[str, typing.Any]:
    return {**(properties or {}), "bootstrap.servers": bootstrap}


def restore_transactional_id(app: str) -> str:
    return f"pystatefun-{app}-restore"


def restored_group(app: str) -> str:
    """The consumer group whose offset metadata says which savepoint ``app`` was restored from."""
    return f"pystatefun-{app}-restored"


# -- what both directions ask the cluster ---------------------------------------------------------------


class _Cluster:
    """The lookups of one take or restore (admin requests and short-lived consumers)."""

    def __init__(self, bootstrap: str, properties: typing.Mapping[str, str] | None):
        from confluent_kafka.admin import AdminClient

        self.bootstrap = bootstrap
        self.config = _client_config(bootstrap, properties)
        self.admin = AdminClient(self.config)
        self._reader: Consumer | None = None  # see read

    def partition_counts(self) -> dict[str, int]:
        """Every topic of the cluster with its partition count."""
        metadata = self.admin.list_topics(timeout=REQUEST_TIMEOUT_SECONDS)
        return {name: len(topic.partitions) for name, topic in metadata.topics.items()
                if topic.error is None and topic.partitions}

    def members(self, group: str) -> list[str]:
        """The members of ``group`` now: a pystatefun worker by its worker id, any other consumer by its
        client id and host."""
        from confluent_kafka import KafkaError, KafkaException

        def describe() -> typing.Any:
            future = self.admin.describe_consumer_groups([group], request_timeout=REQUEST_TIMEOUT_SECONDS)[group]
            return future.result(REQUEST_TIMEOUT_SECONDS)

        try:  # a broker just started answers COORDINATOR_LOAD_IN_PROGRESS for a while: asked again
            description = retrying(f"members of group {group}", time.monotonic() + REQUEST_TIMEOUT_SECONDS, describe)
        except KafkaException as e:
            if e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
                return []
            raise
        names = []
        for member in description.members:
            parsed = parse_client_id(member.client_id)
            names.append(parsed[0] if parsed is not None else f"{member.client_id or member.member_id} ({member.host})")
        return sorted(names)

    def consumer(self, group: str) -> Consumer:
        """A consumer that never joins ``group``: for its committed offsets and its group metadata.
        read_committed makes the offset lookups wait for offsets of transactions still open."""
        from confluent_kafka import Consumer

        return Consumer({**self.config, **_READ_SETTINGS, "group.id": group, "enable.auto.commit": False,
                         "enable.auto.offset.store": False, "isolation.level": "read_committed"})

    def committed(self, group: str, topic: str, partitions: int) -> dict[int, int]:
        """The committed offsets of ``group`` on the partitions of ``topic`` (those that have one)."""
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        consumer = self.consumer(group)
        try:
            found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                       timeout=OPEN_TRANSACTION_WAIT_SECONDS)
        except KafkaException as e:
            if e.args[0].code() != KafkaError._TIMED_OUT:
                raise
            raise SavepointError(
                f"the committed offsets of group {group} on {topic} were held back for {OPEN_TRANSACTION_WAIT_SECONDS} s: "
                f"a transaction with offsets of them is still open, and it is not a worker's (theirs abort within 20 s "
                f"after a kill -9). Find and abort it (docs/kafka.md, 'A transaction the workers cannot fence'), then "
                f"try again") from None
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}

    def group_offsets(self, group: str) -> list[tuple[str, int, int, str | None]]:
        """Every committed offset of ``group``: (topic, partition, offset, metadata)."""
        from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException

        def list_offsets() -> typing.Any:
            future = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                            request_timeout=REQUEST_TIMEOUT_SECONDS)[group]
            return future.result(REQUEST_TIMEOUT_SECONDS)

        try:
            result = retrying(f"offsets of group {group}", time.monotonic() + REQUEST_TIMEOUT_SECONDS, list_offsets)
        except KafkaException as e:
            if e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
                return []
            raise
        return [(tp.topic, tp.partition, tp.offset, tp.metadata) for tp in result.topic_partitions or ()
                if tp.offset >= 0]

    def ends(self, topic: str, partitions: int) -> dict[int, tuple[int, int, int]]:
        """Per partition: (first offset, last stable offset, end offset). The two ends differ while a
        transaction is open (read_committed readers stop at the first)."""
        from confluent_kafka import Consumer, TopicPartition

        committed = self.consumer(f"pystatefun-savepoint-{topic}")
        uncommitted = Consumer({**self.config, "group.id": f"pystatefun-savepoint-{topic}",
                                "isolation.level": "read_uncommitted"})
        # a topic just created may not have its partitions' leaders yet: asked again while that lasts
        deadline = time.monotonic() + OPEN_TRANSACTION_WAIT_SECONDS
        try:
            result = {}
            for p in range(partitions):
                tp = TopicPartition(topic, p)
                low, stable = retrying(f"watermarks of {topic}/{p}", deadline, lambda: committed.get_watermark_offsets(
                    tp, timeout=REQUEST_TIMEOUT_SECONDS, cached=False))
                _, end = retrying(f"watermarks of {topic}/{p}", deadline, lambda: uncommitted.get_watermark_offsets(
                    tp, timeout=REQUEST_TIMEOUT_SECONDS, cached=False))
                result[p] = (low, stable, end)
            return result
        finally:
            committed.close()
            uncommitted.close()

    def read(self, topic: str, partition: int, start: int, end: int) -> typing.Iterator[Message]:
        """The committed records of ``topic``/``partition`` from ``start`` up to ``end``, in offset order
        (read_committed: the position also moves past transaction markers and aborted records, which are
        never delivered). One consumer reads every partition in turn: a consumer per partition would
        start threads each time, and the C library's allocator keeps memory per thread it saw."""
        from confluent_kafka import KafkaException, TopicPartition

        if start >= end:
            return
        if self._reader is None:
            self._reader = self.consumer("pystatefun-savepoint")
        reader = self._reader
        reader.assign([TopicPartition(topic, partition, start)])
        try:
            position, moved = start, time.monotonic()
            while position < end:
                for record in consume_batch(reader, READ_BATCH, 0.2):
                    error = record.error()
                    if error is None:
                        if record.offset() < end:
                            yield record
                    elif error.fatal():
                        raise KafkaException(error)
                now = reader.position([TopicPartition(topic, partition)])[0].offset
                if now > position:
                    position, moved = now, time.monotonic()
                elif time.monotonic() - moved > STALLED_READ_SECONDS:
                    raise SavepointError(f"reading {topic}/{partition} stopped at offset {position} of {end} for "
                                         f"{STALLED_READ_SECONDS} s (an open transaction holds it back, or the broker "
                                         f"does not answer); try again")
        finally:
            reader.unassign()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _encode_state(value: bytes, expire_at: int | None) -> bytes:
    """A ``StateValue`` around a serialized TypedValue, without parsing it (the hot path of a restore):
    field 1 (the TypedValue, length-delimited), then field 2 (varint) unless it is 0. Written by hand for
    speed: 0.37 µs a value against 1.59 µs for protobuf's parse and serialize (upb, 100-byte values),
    about 1.2 s of a million-address restore's 8 s (docs/savepoints.md); the same bytes as protobuf's
    (tests/savepoints/test_kafka_encoding.py)."""
    if expire_at is not None and expire_at < 0:  # not a time: as protobuf writes it (ten bytes)
        return StateValue(value=TypedValue.FromString(value), expire_at_ms=expire_at).SerializeToString()
    encoded = b"\x0a" + varint(len(value)) + value
    return encoded + b"\x10" + varint(expire_at) if expire_at else encoded


def _typename(a: Address) -> str:
    return f"{a.namespace}/{a.type}"


def _address(typename: str, id: str) -> Address:
    namespace, _, name = typename.rpartition("/")
    return Address(namespace=namespace, type=name, id=id)


# -- take -----------------------------------------------------------------------------------------------


class _Changelog:
    """One changelog partition's last value per key, deduplicated in a temporary SQLite file (a
    compacted topic still has older values of a key until the cleaner passes): memory stays bounded."""

    def __init__(self, folder: Path):
        self.db = sqlite3.connect(folder / "changelog.db", isolation_level=None)
        self.db.execute("PRAGMA page_size=65536")  # fewer page splits of the key-ordered table
        self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-16384")  # 16 MiB: what the take's memory peaks with
        self.db.execute("CREATE TABLE records (key BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID")
        self.db.execute("CREATE TABLE timers (id INTEGER PRIMARY KEY, value BLOB)")  # in id order
        # kept across partitions: a restore writes each record to every partition (see the docstring)
        self.db.execute("CREATE TABLE idempotency (key TEXT PRIMARY KEY, expires_ms INTEGER, status INTEGER, body BLOB, "
                        "content_type TEXT, request TEXT)")

    def load(self, batch: list[Message]) -> None:
        """A batch of records, later ones replacing earlier ones of the same key (a tombstone: NULL)."""
        plain, timers = [], []
        for record in batch:
            key = record.key()
            if key[:2] == b"t\x00":
                timers.append((int(key[2:]), record.value()))
            else:
                plain.append((key, record.value()))
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?)", plain)
        self.db.executemany("INSERT OR REPLACE INTO timers VALUES (?, ?)", timers)
        self.db.execute("COMMIT")

    def processed(self) -> list[int]:
        """The ``o`` record's runs [start, end) of offsets processed ahead of the committed offset."""
        row = self.db.execute("SELECT value FROM records WHERE key = ?", (records.PROCESSED_KEY,)).fetchone()
        if row is None or row[0] is None:
            return []
        from pystatefun.wire.log_pb2 import ProcessedOffsets

        return list(ProcessedOffsets.FromString(row[0]).ranges)

    def rows(self, now_ms: int) -> typing.Iterator[StateRow | TimerRow | ParkedRow | KinesisPositionRow]:
        """The partition's state values, parked addresses, Kinesis shard positions and timers; its live
        idempotency records go to the table that ``idempotency`` reads once every partition is in."""
        for key, value in self.db.execute("SELECT key, value FROM records WHERE value IS NOT NULL ORDER BY key"):
            if key == records.PROCESSED_KEY:
                continue
            kind, *names = key.decode().split(records.SEP)
            if kind == "s":
                stored = StateValue.FromString(value)
                typed, expire_at = stored.value.SerializeToString(), stored.expire_at_ms or None
                yield StateRow(names[0], names[1], names[2], typed, expire_at)
            elif kind == "p":
                yield ParkedRow(names[0], names[1], ParkedValue.FromString(value).reason)
            elif kind == "k":  # a Kinesis ingress's shard position (backends/kafka/kinesis.py)
                yield KinesisPositionRow(names[0], names[1], names[2], value.decode())
            elif kind == "i":
                stored = IdempotencyValue.FromString(value)
                if stored.expires_ms > now_ms:
                    self.db.execute(
                        "INSERT INTO idempotency VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                        "expires_ms = excluded.expires_ms, status = excluded.status, body = excluded.body, "
                        "content_type = excluded.content_type, request = excluded.request "
                        "WHERE excluded.expires_ms > idempotency.expires_ms",
                        (names[0], stored.expires_ms, stored.status, stored.body, stored.content_type, stored.request))
        for (value,) in self.db.execute("SELECT value FROM timers WHERE value IS NOT NULL ORDER BY id"):
            timer = TimerValue.FromString(value)
            message = timer.message
            caller = message.caller if message.HasField("caller") else None
            yield TimerRow(timer.due_ms, _typename(message.target), message.target.id,
                           None if caller is None else _typename(caller), None if caller is None else caller.id,
                           timer.token or None, message.value.SerializeToString())

    def idempotency(self) -> typing.Iterator[IdempotencyRow]:
        """The live idempotency records of every partition read, each key once (the latest expiry)."""
        for row in self.db.execute("SELECT * FROM idempotency ORDER BY key"):
            yield IdempotencyRow(*row)

    def clear(self) -> None:
        self.db.execute("DELETE FROM records")
        self.db.execute("DELETE FROM timers")

    def close(self) -> None:
        self.db.close()


def _message_row(data: bytes) -> MessageRow:
    message = LogMessage.FromString(data)
    caller = message.caller if message.HasField("caller") else None
    return MessageRow(_typename(message.target), message.target.id, None if caller is None else _typename(caller),
                      None if caller is None else caller.id, message.value.SerializeToString())


def _dead_letter_row(value: bytes, headers: list[tuple[str, bytes]] | None) -> DeadLetterRow:
    letter = records.dead_letter_of(value, headers)
    caller = letter.caller
    return DeadLetterRow(letter.target_type, letter.target_id, None if caller is None else caller.typename,
                         None if caller is None else caller.id, letter.value.SerializeToString(), letter.reason,
                         letter.at_ms)


def _kafka_ingresses(module: Module | None) -> list[KafkaIngressSpec]:
    return [] if module is None else [spec for spec in module.ingresses if isinstance(spec, KafkaIngressSpec)]


class _Snapshot(typing.NamedTuple):
    """What a take reads up to; compared again afterwards (see ``take``)."""

    ends: dict[str, dict[int, tuple[int, int, int]]]  # topic -> partition -> (low, stable, end)
    committed: dict[int, int]  # partition of <app>.messages -> offset
    positions: list[PositionRow]
    # partition of <app>.kinesis-egress -> the offset its forwarders' group put up to (backends/kafka/kinesis.py)
    forwarded: dict[int, int]


def _snapshot(cluster: _Cluster, topics: Topics, partitions: int, ingresses: list[KafkaIngressSpec],
              counts: dict[str, int]) -> _Snapshot:
    # the offsets first: the lookup waits for offsets of open transactions to be settled
    committed = cluster.committed(topics.app, topics.messages, partitions)
    positions = []
    for spec in ingresses:
        for topic in dict.fromkeys(routing.source for routing in spec.topics):
            if topic in counts:
                for partition, offset in sorted(cluster.committed(spec.consumer_group_id, topic, counts[topic]).items()):
                    positions.append(PositionRow(spec.id, topic, partition, offset))
    names = {topics.messages: partitions, topics.state: partitions, topics.dead_letters: counts[topics.dead_letters]}
    forwarded: dict[int, int] = {}
    if topics.kinesis_egress in counts:  # an application from before Kinesis egresses has none
        names[topics.kinesis_egress] = counts[topics.kinesis_egress]
        # the forwarders' consumer group is named like the topic (backends/kafka/kinesis.py)
        forwarded = cluster.committed(topics.kinesis_egress, topics.kinesis_egress, counts[topics.kinesis_egress])
    return _Snapshot({name: cluster.ends(name, n) for name, n in names.items()}, committed, positions, forwarded)


def _settled(cluster: _Cluster, topics: Topics, partitions: int, ingresses: list[KafkaIngressSpec],
             counts: dict[str, int]) -> _Snapshot:
    """A snapshot once no transaction is open on the application's topics (waits for a dead worker's to
    abort, within OPEN_TRANSACTION_WAIT_SECONDS)."""
    deadline = time.monotonic() + OPEN_TRANSACTION_WAIT_SECONDS
    while True:
        snapshot = _snapshot(cluster, topics, partitions, ingresses, counts)
        open_ = [f"{topic}/{p}" for topic, ends in snapshot.ends.items() for p, (_, stable, end) in ends.items()
                 if stable < end]
        if not open_:
            return snapshot
        if time.monotonic() > deadline:
            raise SavepointError(
                f"a transaction is still open on {', '.join(open_[:5])} after {OPEN_TRANSACTION_WAIT_SECONDS} s, and no "
                f"worker of {topics.app} runs: it is not one of the workers' (theirs abort within 20 s after a "
                f"kill -9). Find and abort it (docs/kafka.md, 'A transaction the workers cannot fence'), then take "
                f"the savepoint again")
        time.sleep(0.5)


def _moved(before: _Snapshot, after: _Snapshot) -> bool:
    """Whether anything was committed between two snapshots (the first offsets may move by themselves:
    retention, compaction)."""
    def ends(snapshot: _Snapshot) -> dict[str, dict[int, tuple[int, int]]]:
        return {topic: {p: (stable, end) for p, (_, stable, end) in partitions.items()}
                for topic, partitions in snapshot.ends.items()}

    return ((ends(before), before.committed, before.positions, before.forwarded)
            != (ends(after), after.committed, after.positions, after.forwarded))


# how long a group's members that stopped without leaving it may take to be gone: the workers' session
# timeout (6 s) after a worker stopped in the middle of a rebalance, a Kafka consumer's default (45 s) for
# an embedded pystatefun's static ingress member
WORKERS_GONE_SECONDS = 10.0
INGRESS_MEMBERS_GONE_SECONDS = 50.0


def _members_after_waiting(cluster: _Cluster, group: str, seconds: float) -> list[str]:
    """The members of ``group`` still there after up to ``seconds`` of waiting for them to go: a consumer
    that stopped without a LeaveGroup (a static member, or one stopped while the group was rebalancing)
    stays listed until its session times out."""
    deadline = time.monotonic() + seconds
    members = cluster.members(group)
    if members:
        log.info("waiting up to %.0f s for %s to leave consumer group %s", seconds, ", ".join(members), group)
    while members and time.monotonic() < deadline:
        time.sleep(0.5)
        members = cluster.members(group)
    return members


def _refuse_running(cluster: _Cluster, app: str) -> None:
    running = _members_after_waiting(cluster, app, WORKERS_GONE_SECONDS)
    if running:
        raise SavepointError(
            f"worker(s) {', '.join(running)} of {app} still run: stop them (SIGTERM lets each commit its last epoch) "
            f"and take the savepoint again (a worker killed with kill -9 stays listed until the group's session "
            f"timeout, 6 s, has passed)")


def take(url: str, bootstrap: str, app: str, module: Module | None = None, properties: typing.Mapping[str, str] | None = None,
         progress: Progress | None = None) -> Manifest:
    """A savepoint of the stopped application ``app`` (see the module docstring) at ``url``; with ``module``
    (its loaded module.yaml), the positions of its Kafka ingresses too (its Kinesis ingresses' positions
    are in its changelog). Refused while a worker runs."""
    from confluent_kafka import KafkaException

    try:
        with storage.writing(url) as path, contextlib.ExitStack() as stack:
            cluster = stack.enter_context(contextlib.closing(_Cluster(bootstrap, properties)))
            counts = cluster.partition_counts()
            topics = Topics(app, counts.get(f"{app}.messages", 0))
            if topics.messages not in counts or topics.state not in counts:
                raise SavepointError(f"there is no application {app} on {bootstrap}: topic "
                                     f"{topics.messages if topics.messages not in counts else topics.state} does not "
                                     f"exist (check --app and --bootstrap-servers)")
            partitions = topics.partitions
            if counts[topics.state] != partitions:
                raise SavepointError(f"topic {topics.state} has {counts[topics.state]} partitions and {topics.messages} "
                                     f"{partitions}: this is not an application the Kafka backend made")
            counts.setdefault(topics.dead_letters, 0)
            ingresses = _kafka_ingresses(module)
            _refuse_running(cluster, app)
            snapshot = _settled(cluster, topics, partitions, ingresses, counts)
            writer = SavepointWriter(path)
            try:
                _export(cluster, topics, partitions, snapshot, writer, path.parent, progress)
                # Nothing may have moved while reading: a worker started meanwhile would have made the
                # savepoint a mix of two cuts.
                _refuse_running(cluster, app)
                if _moved(snapshot, _snapshot(cluster, topics, partitions, ingresses, counts)):
                    raise SavepointError(f"{app} changed while the savepoint was read (a worker ran meanwhile): stop "
                                         f"every worker and take the savepoint again")
                return writer.finish(application=app, source_backend="kafka", partitions=partitions, mode="stop",
                                     created_ms=int(time.time() * 1000))
            except BaseException:
                writer.abort()
                raise
    except KafkaException as e:
        raise SavepointError(f"Kafka at {bootstrap}: {_describe(e)}") from None


def _export(cluster: _Cluster, topics: Topics, partitions: int, snapshot: _Snapshot, writer: SavepointWriter,
            folder: Path, progress: Progress | None) -> None:
    done: dict[str, int] = {}

    def counted(table: str, rows: typing.Iterable[typing.Any]) -> typing.Iterator[typing.Any]:
        n = done.get(table, 0)
        for row in rows:
            n += 1
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress(table, n)
            yield row
        done[table] = n

    now_ms = int(time.time() * 1000)
    with tempfile.TemporaryDirectory(prefix=".pystatefun-take-", dir=folder) as scratch:
        changelog = _Changelog(Path(scratch))
        try:
            for p in range(partitions):
                low, _, end = snapshot.ends[topics.state][p]
                batch: list[Message] = []
                for record in counted("changelog", cluster.read(topics.state, p, low, end)):
                    batch.append(record)
                    if len(batch) >= READ_BATCH:
                        changelog.load(batch)
                        batch = []
                changelog.load(batch)
                writer.write(counted("state", changelog.rows(now_ms)))
                processed = changelog.processed()
                changelog.clear()
                low, _, end = snapshot.ends[topics.messages][p]
                start = max(low, snapshot.committed.get(p, low))
                writer.write(counted("messages", _unprocessed(cluster.read(topics.messages, p, start, end), processed)))
            writer.write(counted("idempotency", changelog.idempotency()))
        finally:
            changelog.close()
    low, _, end = snapshot.ends[topics.dead_letters].get(0, (0, 0, 0))
    writer.write(counted("dead_letters", (_dead_letter_row(r.value(), r.headers())
                                          for r in cluster.read(topics.dead_letters, 0, low, end))))
    writer.write(snapshot.positions)
    # Kinesis egress records committed and not put yet, from where the forwarders' group is (a record
    # of <app>.kinesis-egress is keyed by its egress id: backends/kafka/kinesis.py)
    for p, (low, _, end) in snapshot.ends.get(topics.kinesis_egress, {}).items():
        start = max(low, snapshot.forwarded.get(p, low))
        writer.write(counted("egress", (
            EgressRow(r.key().decode(), KinesisEgressRecord.FromString(r.value()).stream, r.value(), KINESIS_EGRESS)
            for r in cluster.read(topics.kinesis_egress, p, start, end))))
    if progress is not None:
        for table, n in done.items():
            progress(table, n)


def _unprocessed(messages: typing.Iterable[Message], processed: list[int]) -> typing.Iterator[MessageRow]:
    """The messages not in ``processed`` (runs [start, end) of offsets, sorted)."""
    starts = processed[::2]
    for record in messages:
        offset = record.offset()
        i = bisect.bisect_right(starts, offset) - 1
        if i >= 0 and offset < processed[2 * i + 1]:
            continue  # processed ahead of the committed offset: its effects are in the changelog
        yield _message_row(record.value())


# -- restore --------------------------------------------------------------------------------------------


class _Plan(typing.NamedTuple):
    """What a restore writes besides the application's own topics, checked against the module first."""

    egress_topics: set[str]
    groups: dict[str, str]  # ingress id -> its consumerGroupId


def _plan(reader: SavepointReader, module: Module) -> _Plan:
    kinesis_ingresses = {spec.id for spec in module.ingresses if isinstance(spec, KinesisIngressSpec)}
    for position in reader.rows("kinesis_positions"):
        if position.ingress not in kinesis_ingresses:
            raise SavepointError(f"{reader.name} has positions of Kinesis ingress {position.ingress}, which {module.path} "
                                 f"does not define: add it to the module, or remove the positions with pystatefun "
                                 f"savepoint transform")
    ingresses = {spec.id: spec for spec in _kafka_ingresses(module)}
    groups = {}
    for row in reader.rows("ingress_positions"):
        spec = ingresses.get(row.ingress)
        if spec is None:
            raise SavepointError(f"{reader.name} has positions of Kafka ingress {row.ingress}, which {module.path} does "
                                 f"not define: add it to the module (with its consumerGroupId), or remove the positions "
                                 f"with pystatefun savepoint transform")
        groups[row.ingress] = spec.consumer_group_id
    egresses = {spec.id: spec for spec in module.egresses}
    topics: set[str] = set()
    checked: set[str] = set()
    for row in reader.rows("egress"):
        if row.egress_id not in checked:
            spec = egresses.get(row.egress_id)
            if not isinstance(spec, (KafkaEgressSpec, KinesisEgressSpec)):  # to the module's egress of its id
                what = "which the Kafka backend does not have (only Kafka and Kinesis egresses)" if spec is not None \
                    else f"which {module.path} does not define"
                raise SavepointError(
                    f"{reader.name} holds {reader.manifest.counts['egress']} egress records, some of egress "
                    f"{row.egress_id}, {what}: restore it on the embedded backend, or let the source application "
                    f"deliver them (read them from its egress) and take the savepoint again")
            checked.add(row.egress_id)
            row.payload_as(_egress_kind(spec))  # refuses a record its new egress cannot take, before anything
        if isinstance(egresses[row.egress_id], KafkaEgressSpec):
            topics.add(row.topic)
    return _Plan(topics, groups)


def _egress_kind(spec: KafkaEgressSpec | KinesisEgressSpec) -> str:
    return KAFKA_EGRESS if isinstance(spec, KafkaEgressSpec) else KINESIS_EGRESS


def _refuse_existing(cluster: _Cluster, app: str, groups: typing.Iterable[str]) -> None:
    """Refuses a restore into an application that exists (workers, offsets); and while a consumer is in
    one of the ingresses' groups (it would move the positions the restore commits)."""
    running = cluster.members(app)
    if running:
        raise SavepointError(f"application {app} runs (worker(s) {', '.join(running)}): restore into a new --app name")
    if cluster.group_offsets(app):
        raise SavepointError(f"application {app} exists (its consumer group {app} has committed offsets): restore into "
                             f"a new --app name, or delete the old application first (its topics {app}.messages, "
                             f"{app}.state, {app}.dead-letters and kafka-consumer-groups.sh --delete --group {app})")
    for group in sorted(set(groups)):
        members = _members_after_waiting(cluster, group, INGRESS_MEMBERS_GONE_SECONDS)
        if members:
            raise SavepointError(
                f"consumer group {group} of a Kafka ingress has members ({', '.join(members)}): stop what reads with "
                f"it and restore again (waited {INGRESS_MEMBERS_GONE_SECONDS:.0f} s for them to leave)")


def _holds_data(cluster: _Cluster, topic: str, partitions: int) -> bool:
    """Whether ``topic`` has a committed record (an aborted restore's records do not count)."""
    for p, (low, stable, _) in cluster.ends(topic, partitions).items():
        for _ in cluster.read(topic, p, low, stable):
            return True
    return False


def _transaction_timeout_ms(cluster: _Cluster, properties: typing.Mapping[str, str] | None) -> int:
    """The restore's transaction may last as long as the brokers allow (transaction.max.timeout.ms)."""
    if properties and "transaction.timeout.ms" in properties:
        return int(properties["transaction.timeout.ms"])
    from confluent_kafka.admin import ConfigResource

    try:
        brokers = cluster.admin.list_topics(timeout=REQUEST_TIMEOUT_SECONDS).brokers
        resource = ConfigResource(ConfigResource.Type.BROKER, str(min(brokers)))
        config = cluster.admin.describe_configs([resource])[resource].result(REQUEST_TIMEOUT_SECONDS)
        return int(config["transaction.max.timeout.ms"].value)
    except Exception:  # noqa: BLE001 - a cluster that does not say: its default
        return DEFAULT_TRANSACTION_MAX_TIMEOUT_MS


class _Output:
    """The restore's transactional producer: produce that waits while the client's queue is full."""

    def __init__(self, producer: Producer):
        self.producer = producer

    def send(self, topic: str, value: bytes | None, key: bytes | None, partition: int = -1,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        while True:
            try:
                if headers is None:
                    self.producer.produce(topic, value, key, partition)
                else:
                    self.producer.produce(topic, value, key, partition, headers=headers)
                return
            except BufferError:
                self.producer.poll(0.05)


def restore(url: str, bootstrap: str, app: str, partitions: int | None, module: Module,
            properties: typing.Mapping[str, str] | None = None, progress: Progress | None = None) -> Manifest:
    """Restores the savepoint at ``url`` into the new application ``app`` with ``partitions`` partitions
    (None: as many as the application it was taken from); ``module`` is the application's module (its
    Kafka ingresses' groups get the positions, its Kafka egresses the egress records). Refused when
    ``app`` holds data. Start the workers after it returned."""
    with storage.reading(url) as path, SavepointReader(path, url) as reader:
        reader.verify(None if progress is None else lambda n: progress("verified", n))
        partitions = partitions or reader.manifest.partitions
        plan = _plan(reader, module)
        return _restore(reader, url, bootstrap, app, partitions, module, plan, properties, progress)


def _restore(reader: SavepointReader, url: str, bootstrap: str, app: str, partitions: int, module: Module, plan: _Plan,
             properties: typing.Mapping[str, str] | None, progress: Progress | None) -> Manifest:
    from confluent_kafka import KafkaException, Producer

    with contextlib.closing(_Cluster(bootstrap, properties)) as cluster:
        try:
            _refuse_existing(cluster, app, plan.groups.values())
            counts = cluster.partition_counts()
            for row in reader.rows("ingress_positions"):
                if counts.get(row.topic, 0) <= row.partition:
                    raise SavepointError(
                        f"{reader.name} has a position of Kafka ingress {row.ingress} in partition {row.partition} of topic "
                        f"{row.topic}, which does not exist on {bootstrap}: create the topic with the partitions it had "
                        f"(the positions are offsets in them) and restore again")
            missing = sorted(plan.egress_topics - set(counts))
            if missing:
                raise SavepointError(f"{reader.name} holds egress records for topic(s) {', '.join(missing)}, which do "
                                     f"not exist on {bootstrap}: create them and restore again")
            producer = Producer({**cluster.config, **_WRITE_SETTINGS, "transactional.id": restore_transactional_id(app),
                                 "transaction.timeout.ms": _transaction_timeout_ms(cluster, properties)})
            # fences a restore into the same application that was killed: its open transaction aborts now
            producer.init_transactions(REQUEST_TIMEOUT_SECONDS * 2)
            topics = Topics(app, partitions)
            for topic in (topics.messages, topics.state, topics.dead_letters, topics.kinesis_egress):
                if topic in counts and _holds_data(cluster, topic, counts[topic]):
                    raise SavepointError(f"application {app} exists (topic {topic} holds data): restore into a new "
                                         f"--app name, or delete its topics {topics.messages}, {topics.state} and "
                                         f"{topics.dead_letters} first")
            try:
                prepare_topics(cluster.admin, app, partitions)
            except TopicMismatchError as e:
                raise SavepointError(f"{e} (they hold no data: left by an earlier restore that did not finish? "
                                     f"Restore with what they have, or delete {topics.messages}, {topics.state} and "
                                     f"{topics.dead_letters} first)") from None
            producer.begin_transaction()
            try:
                _import(reader, _Output(producer), topics, module, progress)
                _commit_positions(cluster, producer, reader, plan)
                marker = json.dumps({"url": url, "checksum": reader.manifest.checksum,
                                     "created_at": reader.manifest.created_at})
                _send_offsets(cluster, producer, restored_group(app), [(topics.state, 0, 0, marker)])
                producer.commit_transaction(COMMIT_TIMEOUT_SECONDS)
            except BaseException:
                with contextlib.suppress(KafkaException):
                    producer.abort_transaction(REQUEST_TIMEOUT_SECONDS)
                raise
        except KafkaException as e:
            raise SavepointError(f"restoring into {app} on {bootstrap} failed, nothing of it is visible: {_describe(e)}. "
                                 f"Restore again (it takes over where this one left nothing)") from None
        try:
            _visible(cluster, topics)
        except KafkaException as e:
            raise SavepointError(f"the restore into {app} committed, but whether it is readable yet could not be "
                                 f"checked ({_describe(e)}): wait a moment before starting the workers") from None
        return reader.manifest


def _describe(error: Exception) -> str:
    """A Kafka client's exception in a line."""
    detail = error.args[0] if error.args else None
    return detail.str() if detail is not None and hasattr(detail, "str") else str(error)


def _import(reader: SavepointReader, out: _Output, topics: Topics, module: Module, progress: Progress | None) -> None:
    partitions = topics.partitions
    state, messages = topics.state, topics.messages

    def each(table: str) -> typing.Iterator[typing.Any]:
        n = 0
        for row in reader.rows(table):
            yield row
            n += 1
            if progress is not None and n % PROGRESS_EVERY == 0:
                progress(table, n)
        if progress is not None:
            progress(table, n)

    sep = records.SEP
    for row in each("state"):
        out.send(state, _encode_state(row.value, row.expire_at), f"s{sep}{row.typename}{sep}{row.id}{sep}{row.name}".encode(),
                 partition_of(row.id, partitions))
    for timer_id, row in enumerate(each("timers"), 1):
        message = LogMessage(target=_address(row.target_type, row.target_id), value=TypedValue.FromString(row.value))
        if row.caller_type is not None:
            message.caller.CopyFrom(_address(row.caller_type, row.caller_id or ""))
        value = TimerValue(due_ms=row.due_ms, token=row.token or "", message=message)
        # a timer lives in its sender's partition, which owns its cancellation token (runtime/effects.py)
        owner = row.caller_id if row.caller_type is not None else row.target_id
        out.send(state, value.SerializeToString(), records.timer_key(timer_id), partition_of(owner, partitions))
    for row in each("parked"):
        out.send(state, records.encode_parked(row.reason), records.parked_key(row.typename, row.id),
                 partition_of(row.id, partitions))
    for row in each("idempotency"):
        value = IdempotencyValue(expires_ms=row.expires_ms, status=row.status, body=row.body,
                                 content_type=row.content_type, request=row.request).SerializeToString()
        key = records.idempotency_key(row.key)
        for p in range(partitions):  # its address is not in the savepoint: every partition has it
            out.send(state, value, key, p)
    for row in each("messages"):
        message = LogMessage(target=_address(row.target_type, row.target_id), value=TypedValue.FromString(row.value))
        if row.caller_type is not None:
            message.caller.CopyFrom(_address(row.caller_type, row.caller_id or ""))
        out.send(messages, message.SerializeToString(), row.target_id.encode(), partition_of(row.target_id, partitions))
    for row in each("dead_letters"):
        caller = address(row.caller_type, row.caller_id or "") if row.caller_type is not None else None
        value, headers = records.encode_dead_letter(DeadLetter(row.target_type, row.target_id, caller,
                                                               TypedValue.FromString(row.value), row.reason, row.at_ms))
        out.send(topics.dead_letters, value, None, 0, headers)
    for row in each("kinesis_positions"):  # with the stream's partition, whose owner reads it
        out.send(state, row.position.encode(), records.kinesis_key(row.ingress, row.stream, row.shard),
                 partition_of(row.stream, partitions))
    egresses = {spec.id: spec for spec in module.egresses}
    for row in each("egress"):  # to the module's egress of its id, as its kind keeps records (EgressRow.payload_as)
        if isinstance(egresses[row.egress_id], KinesisEgressSpec):  # forwarded by the partition key's owner
            payload = row.payload_as(KINESIS_EGRESS)
            partition_key = KinesisEgressRecord.FromString(payload).partition_key
            out.send(topics.kinesis_egress, payload, row.egress_id.encode(), partition_of(partition_key, partitions))
            continue
        record = KafkaProducerRecord.FromString(row.payload_as(KAFKA_EGRESS))
        out.send(record.topic, record.value_bytes, record.key.encode() if record.key else None)


def _visible(cluster: _Cluster, topics: Topics) -> None:
    """Waits until the committed transaction is visible to read_committed readers: the broker writes its
    commit markers after the commit returned, and a worker started before that would see none of it
    (its changelog restore reads up to the last stable offset)."""
    deadline = time.monotonic() + OPEN_TRANSACTION_WAIT_SECONDS
    for topic, partitions in ((topics.state, topics.partitions), (topics.messages, topics.partitions),
                              (topics.dead_letters, 1), (topics.kinesis_egress, topics.partitions)):
        while any(stable < end for _, stable, end in cluster.ends(topic, partitions).values()):
            if time.monotonic() > deadline:
                raise SavepointError(f"the restore into {topics.app} committed, but {topic} is not readable yet after "
                                     f"{OPEN_TRANSACTION_WAIT_SECONDS} s: wait before starting the workers")
            time.sleep(0.05)


def _send_offsets(cluster: _Cluster, producer: Producer, group: str, offsets: list[tuple[str, int, int, str | None]]) -> None:
    """Commits ``offsets`` (topic, partition, offset, metadata) for ``group`` with the transaction."""
    from confluent_kafka import TopicPartition

    consumer = cluster.consumer(group)
    try:
        producer.send_offsets_to_transaction(
            [TopicPartition(topic, p, offset) if metadata is None else TopicPartition(topic, p, offset, metadata=metadata)
             for topic, p, offset, metadata in offsets],
            consumer.consumer_group_metadata(), REQUEST_TIMEOUT_SECONDS)
    finally:
        consumer.close()


def _commit_positions(cluster: _Cluster, producer: Producer, reader: SavepointReader, plan: _Plan) -> None:
    """The Kafka ingresses' positions, as their groups' offsets (where the workers read them)."""
    by_group: dict[str, list[tuple[str, int, int, str | None]]] = {}
    for row in reader.rows("ingress_positions"):
        by_group.setdefault(plan.groups[row.ingress], []).append((row.topic, row.partition, row.next_offset, None))
    for group, offsets in sorted(by_group.items()):
        _send_offsets(cluster, producer, group, offsets)


def restored_from(bootstrap: str, app: str, properties: typing.Mapping[str, str] | None = None) -> str | None:
    """The savepoint URL that ``app`` was restored from (None: it was not, or the mark expired with the
    broker's offsets.retention.minutes, 7 days by default, after the group was last used)."""
    from confluent_kafka import KafkaException

    try:
        with contextlib.closing(_Cluster(bootstrap, properties)) as cluster:
            for _, _, _, metadata in cluster.group_offsets(restored_group(app)):
                if metadata:
                    return json.loads(metadata).get("url")
    except KafkaException as e:
        raise SavepointError(f"Kafka at {bootstrap}: {_describe(e)}") from None
    except ValueError:
        return None
    return None
