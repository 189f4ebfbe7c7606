"""The savepoint file: an application at a consistent cut, in one SQLite file that any SQLite tool opens.

docs/savepoints.md documents the format for users; this module is the one place that writes and reads
it. One table per kind of thing (the row classes below name their columns), plus ``manifest``: JSON
values under the keys of :class:`Manifest`. Values are stored as the runtime keeps them: a state value,
a message and a delayed message as a serialized ``io.statefun.sdk.reqreply.TypedValue``, an egress
record as the bytes its egress forwards. Nothing refers to a partition: a savepoint is restored into any
partition count, each address going where the runtime's hash puts it.

Writing and reading stream: rows go to the file in batches and come back from a cursor, so an
application of any size is saved and restored in bounded memory. The file is complete only once
``SavepointWriter.finish`` wrote the manifest, with the row count of every table and a checksum over
all rows (SHA-256 of each table's rows in order, then of those digests); ``storage.py`` makes the file
appear under its name only then. ``SavepointReader`` refuses a file that is not a savepoint, comes from a
newer format, misses its manifest, or whose counts or checksum do not match, with a message that says
which.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import marshal
import sqlite3
import typing
from pathlib import Path

from pystatefun.wire.kafka_egress_pb2 import KafkaProducerRecord
from pystatefun.wire.kinesis_egress_pb2 import KinesisEgressRecord

FORMAT = "pystatefun-savepoint"
KAFKA_EGRESS, PLAYGROUND_EGRESS, KINESIS_EGRESS = "kafka", "playground", "kinesis"  # EgressRow.kind
# 2: Kinesis ingress positions (table kinesis_positions) and Kinesis egress records (kind "kinesis").
# A file of version 1 reads as one without them.
FORMAT_VERSION = 2
BATCH_ROWS = 10_000
Progress = typing.Callable[[str, int], None]  # (what is being read or written, rows of it so far): a progress bar


class SavepointError(RuntimeError):
    """A savepoint cannot be written or read; the message says what is wrong and what to do."""


class StateRow(typing.NamedTuple):
    """One state value of one address; ``value`` a serialized TypedValue, ``expire_at`` epoch ms or None."""

    typename: str
    id: str
    name: str
    value: bytes
    expire_at: int | None


class MessageRow(typing.NamedTuple):
    """A message accepted and not processed yet, in its target's order (a caller of None: from outside)."""

    target_type: str
    target_id: str
    caller_type: str | None
    caller_id: str | None
    value: bytes


class TimerRow(typing.NamedTuple):
    """A delayed message: due at ``due_ms``; ``token`` its cancellation token (scoped to the caller)."""

    due_ms: int
    target_type: str
    target_id: str
    caller_type: str | None
    caller_id: str | None
    token: str | None
    value: bytes


class ParkedRow(typing.NamedTuple):
    typename: str
    id: str
    reason: str


class DeadLetterRow(typing.NamedTuple):
    """A message that could not be delivered; ``target_id`` is empty for a type no function has."""

    target_type: str
    target_id: str
    caller_type: str | None
    caller_id: str | None
    value: bytes
    reason: str
    at_ms: int


class IdempotencyRow(typing.NamedTuple):
    """The answer kept for an ``Idempotency-Key`` until ``expires_ms``; ``request`` the request's digest."""

    key: str
    expires_ms: int
    status: int
    body: bytes
    content_type: str
    request: str


class SpecRow(typing.NamedTuple):
    """A state spec a remote function registered (so a restored application does not negotiate again)."""

    typename: str
    name: str
    type_typename: str
    mode: int
    ttl_ms: int


class PositionRow(typing.NamedTuple):
    """Where a Kafka ingress continues: the offset of the next record to read of one topic partition."""

    ingress: str
    topic: str
    partition: int
    next_offset: int


class KinesisPositionRow(typing.NamedTuple):
    """Where a Kinesis ingress continues in one shard of a stream (the text io/kinesis/ingress.py keeps:
    ``seq:N`` after sequence number N, ``at:MS``, ``trim`` or ``end``)."""

    ingress: str
    stream: str
    shard: str
    position: str


class EgressRow(typing.NamedTuple):
    """An egress record committed and not forwarded (Kafka, Kinesis) or not read (playground) yet, in order.

    ``kind`` says what ``payload`` is: ``"kafka"``, a serialized KafkaProducerRecord (key, value, topic);
    ``"playground"``, the record's bytes as the playground egress serves them; ``"kinesis"``, a serialized
    KinesisEgressRecord (its ``topic`` the stream). A record moves to an egress of another kind (an
    application whose egress of that id is of another kind) with ``payload_as``."""

    egress_id: str
    topic: str
    payload: bytes
    kind: str

    def payload_as(self, kind: str) -> bytes:
        """The payload as an egress of ``kind`` keeps it: a Kafka record and a Kinesis record map key to
        partition key and topic to stream; a playground record is the value alone (a Kafka record without
        a key; it cannot be a Kinesis record, which needs a partition key)."""
        if kind == self.kind:
            return self.payload
        if self.kind == PLAYGROUND_EGRESS:
            if kind == KINESIS_EGRESS:
                raise SavepointError(f"egress {self.egress_id} has playground records in the savepoint, and the module "
                                     f"makes it a Kinesis egress, whose records need a partition key: give the egress "
                                     f"its kind again, or read its records from the source application and take the "
                                     f"savepoint again")
            return KafkaProducerRecord(topic=self.topic, value_bytes=self.payload).SerializeToString()
        # The two records have the same fields under the same numbers (key/partition key 1, value 2,
        # topic/stream 3; a Kinesis record also has an explicit hash key, 4), so each reads the other's bytes.
        # That also gives a Kinesis egress its records back from a savepoint taken without the module, which
        # takes an egress it does not know for a Kafka one (savepoints/embedded.py).
        if kind == PLAYGROUND_EGRESS:
            return KafkaProducerRecord.FromString(self.payload).value_bytes
        if kind == KAFKA_EGRESS:
            record = KafkaProducerRecord.FromString(self.payload)
            return KafkaProducerRecord(topic=record.topic, key=record.key, value_bytes=record.value_bytes).SerializeToString()
        from pystatefun.io.kinesis.records import check_fields

        try:
            return check_fields(KinesisEgressRecord.FromString(self.payload)).SerializeToString()
        except ValueError as error:
            raise SavepointError(f"egress {self.egress_id} has a Kafka record in the savepoint that the module's Kinesis "
                                 f"egress of that id cannot put ({error}): give the egress its kind again") from None


Row = (StateRow | MessageRow | TimerRow | ParkedRow | DeadLetterRow | IdempotencyRow | SpecRow | PositionRow
       | KinesisPositionRow | EgressRow)

# table -> (row class, SQL column types); the table order is the checksum's order
_TABLES: dict[str, tuple[type, str]] = {
    "state": (StateRow, "typename TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL, expire_at INTEGER"),
    "messages": (MessageRow, "target_type TEXT NOT NULL, target_id TEXT NOT NULL, caller_type TEXT, caller_id TEXT, value BLOB NOT NULL"),
    "timers": (TimerRow, "due_ms INTEGER NOT NULL, target_type TEXT NOT NULL, target_id TEXT NOT NULL, caller_type TEXT, "
                         "caller_id TEXT, token TEXT, value BLOB NOT NULL"),
    "parked": (ParkedRow, "typename TEXT NOT NULL, id TEXT NOT NULL, reason TEXT NOT NULL"),
    "dead_letters": (DeadLetterRow, "target_type TEXT NOT NULL, target_id TEXT NOT NULL, caller_type TEXT, caller_id TEXT, "
                                    "value BLOB NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL"),
    "idempotency": (IdempotencyRow, "key TEXT NOT NULL, expires_ms INTEGER NOT NULL, status INTEGER NOT NULL, "
                                    "body BLOB NOT NULL, content_type TEXT NOT NULL, request TEXT NOT NULL"),
    "function_specs": (SpecRow, "typename TEXT NOT NULL, name TEXT NOT NULL, type_typename TEXT NOT NULL, "
                                "mode INTEGER NOT NULL, ttl_ms INTEGER NOT NULL"),
    "ingress_positions": (PositionRow, "ingress TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, "
                                       "next_offset INTEGER NOT NULL"),
    "egress": (EgressRow, "egress_id TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, kind TEXT NOT NULL"),
    "kinesis_positions": (KinesisPositionRow, "ingress TEXT NOT NULL, stream TEXT NOT NULL, shard TEXT NOT NULL, "
                                              "position TEXT NOT NULL"),
}
TABLES: tuple[str, ...] = tuple(_TABLES)
# the format version that added a table (the others are in every version): an older file has no such
# table, reads as if it were empty, and its checksum is over the tables it has
_SINCE: dict[str, int] = {"kinesis_positions": 2}


def tables_of(version: int) -> tuple[str, ...]:
    """The tables of a savepoint of format ``version``, in the checksum's order."""
    return tuple(table for table in TABLES if _SINCE.get(table, 1) <= version)
_TABLE_OF: dict[type, str] = {row_class: table for table, (row_class, _) in _TABLES.items()}
# made by finish(), after the rows: lookups of one address (inspect, transform) without a full scan
_INDEXES = (
    "CREATE INDEX state_address ON state (typename, id)",
    "CREATE INDEX messages_target ON messages (target_type, target_id)",
)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a savepoint is: written last, so a file with a manifest is complete."""

    format_version: int
    application: str  # the Kafka application name, or the data dir's name on the embedded backend
    source_backend: str  # "embedded" or "kafka"
    partitions: int  # of the application it was taken from (a restore may choose any)
    created_at: str  # ISO 8601, UTC
    created_ms: int
    mode: str  # "online" (the application kept running), "offline" (stopped), "stop" (stop-with-savepoint)
    counts: dict[str, int]  # rows per table
    checksum: str  # "sha256:<hex>" over every table's rows, in TABLES order

    def describe(self) -> dict[str, typing.Any]:
        return dataclasses.asdict(self)


def _hash_row(hasher: typing.Any, row: tuple) -> None:
    """Feeds one row to a table's hasher as Python's marshal format version 2: a tag per value and a length
    where it has one (tuple ``(``, str ``u`` as UTF-8, bytes ``s``, int ``i``/``l``, None ``N``), so no
    two different rows hash alike. Version 2 has no back-references (3 and later may refer to an object
    met before, by identity), so the bytes depend on the values only; it is about five times as fast as
    packing the columns one by one in Python."""
    hasher.update(marshal.dumps(tuple(row), 2))


def _checksum(digests: dict[str, bytes]) -> str:
    outer = hashlib.sha256()
    for table in digests:  # in TABLES order: the tables of the file's version
        outer.update(table.encode() + b"\x00" + digests[table])
    return "sha256:" + outer.hexdigest()


class SavepointWriter:
    """Writes one savepoint file at a local ``path`` (which must not exist): ``write`` rows of any kind, in
    each kind's order (a target's messages in the order it is to process them), then ``finish``."""

    def __init__(self, path: Path):
        self.path = path
        if path.exists():
            raise SavepointError(f"{path} exists already: give the savepoint a new path")
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as error:
            raise SavepointError(f"cannot create {path} ({error}): give a path in a writable directory") from error
        # the file only counts once finish() wrote the manifest and storage.py moved it into place: no
        # journal, no fsync per statement (one fsync at the end)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for table, (_, columns) in _TABLES.items():
            self._db.execute(f"CREATE TABLE {table} ({columns})")
        self._db.execute("BEGIN")
        self._pending: dict[str, list[tuple]] = {table: [] for table in TABLES}
        self._hashers = {table: hashlib.sha256() for table in TABLES}
        self.counts: dict[str, int] = dict.fromkeys(TABLES, 0)

    def write(self, rows: typing.Iterable[Row]) -> None:
        for row in rows:
            table = _TABLE_OF[type(row)]
            pending = self._pending[table]
            pending.append(row)
            if len(pending) >= BATCH_ROWS:
                self._flush(table)

    def _flush(self, table: str) -> None:
        rows = self._pending[table]
        if not rows:
            return
        hasher = self._hashers[table]
        for row in rows:
            _hash_row(hasher, row)
        marks = ", ".join("?" * len(rows[0]))
        self._db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        self.counts[table] += len(rows)
        rows.clear()

    def finish(self, *, application: str, source_backend: str, partitions: int, mode: str,
               created_ms: int) -> Manifest:
        """Writes what is pending, the indexes and the manifest, and makes the file durable."""
        import datetime

        for table in TABLES:
            self._flush(table)
        for statement in _INDEXES:
            self._db.execute(statement)
        manifest = Manifest(
            format_version=FORMAT_VERSION, application=application, source_backend=source_backend,
            partitions=partitions,
            created_at=datetime.datetime.fromtimestamp(created_ms / 1000, datetime.timezone.utc).isoformat(timespec="milliseconds"),
            created_ms=created_ms, mode=mode, counts=dict(self.counts),
            checksum=_checksum({table: hasher.digest() for table, hasher in self._hashers.items()}),
        )
        values = {"format": FORMAT, **manifest.describe()}
        self._db.executemany("INSERT INTO manifest VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()])
        self._db.execute("COMMIT")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.close()
        with open(self.path, "rb+") as file:  # the rows are on disk before the file is moved into place
            import os

            os.fsync(file.fileno())
        return manifest

    def abort(self) -> None:
        """Closes the file without a manifest (the caller removes it)."""
        try:
            self._db.close()
        except sqlite3.Error:
            pass


class SavepointReader:
    """Reads one savepoint file at a local ``path``; ``describe`` names it in messages (its URL)."""

    def __init__(self, path: Path, describe: str | None = None):
        self.path = path
        self.name = describe or str(path)
        if not path.is_file():
            raise SavepointError(f"no savepoint at {self.name}: the file does not exist")
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            found = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as error:
            raise SavepointError(f"{self.name} is not a savepoint or is damaged: {error} (not an SQLite file, or "
                                 f"truncated); take the savepoint again or use another copy") from error
        if "manifest" not in found:
            raise SavepointError(f"{self.name} is not a pystatefun savepoint (an SQLite file without a manifest "
                                 f"table), or it is incomplete: its writer stopped before finishing")
        values = {key: json.loads(value) for key, value in self._db.execute("SELECT key, value FROM manifest")}
        if values.get("format") != FORMAT:
            raise SavepointError(f"{self.name} is not a pystatefun savepoint, or it is incomplete (its manifest has "
                                 f"no format '{FORMAT}')")
        version = values.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise SavepointError(f"{self.name} has savepoint format version {version}, and this pystatefun reads up to "
                                 f"{FORMAT_VERSION}: upgrade pystatefun to read it")
        self.tables = tables_of(version)
        missing = [table for table in self.tables if table not in found]
        if missing:
            raise SavepointError(f"{self.name} is damaged: it has no table {', '.join(missing)}")
        try:
            self.manifest = Manifest(**{field.name: values[field.name] for field in dataclasses.fields(Manifest)
                                        if field.name in values or field.default is dataclasses.MISSING})
        except KeyError as error:
            raise SavepointError(f"{self.name} is damaged: its manifest has no {error.args[0]}") from None
        for table in self.tables:
            counted = self._count(table)
            expected = self.manifest.counts.get(table)
            if counted != expected:
                raise SavepointError(f"{self.name} is damaged: table {table} has {counted} rows, its manifest says "
                                     f"{expected}; take the savepoint again or use another copy")

    def _count(self, table: str) -> int:
        try:
            return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        except sqlite3.DatabaseError as error:
            raise SavepointError(f"{self.name} is damaged: reading table {table} failed ({error})") from error

    def rows(self, table: str) -> typing.Iterator[Row]:
        """A table's rows in the order they were written (none from a table the file's version has not)."""
        if table not in self.tables:
            return
        row_class = _TABLES[table][0]
        try:
            for row in self._db.execute(f"SELECT * FROM {table} ORDER BY rowid"):
                yield row_class(*row)
        except sqlite3.DatabaseError as error:
            raise SavepointError(f"{self.name} is damaged: reading table {table} failed ({error})") from error

    def verify(self, progress: typing.Callable[[int], None] | None = None) -> None:
        """Reads every row and checks the manifest's checksum; ``progress`` gets the rows read so far."""
        digests, read = {}, 0
        for table in self.tables:
            hasher = hashlib.sha256()
            try:  # the cursor's own tuples: the rows need not become row objects to be hashed
                cursor = self._db.execute(f"SELECT * FROM {table} ORDER BY rowid")
                while batch := cursor.fetchmany(BATCH_ROWS):
                    for row in batch:
                        _hash_row(hasher, row)
                    read += len(batch)
                    if progress is not None:
                        progress(read)
            except sqlite3.DatabaseError as error:
                raise SavepointError(f"{self.name} is damaged: reading table {table} failed ({error})") from error
            digests[table] = hasher.digest()
        if progress is not None:
            progress(read)
        if _checksum(digests) != self.manifest.checksum:
            raise SavepointError(f"{self.name} is damaged: its rows do not match the manifest's checksum; take the "
                                 f"savepoint again or use another copy")

    def address(self, typename: str, id: str) -> list[StateRow]:
        """One address's state values."""
        return [StateRow(*row) for row in self._db.execute(
            "SELECT * FROM state WHERE typename = ? AND id = ? ORDER BY rowid", (typename, id))]

    def states_by_address(self) -> typing.Iterator[tuple[str, str, list[StateRow]]]:
        """Every address's state values, one address at a time: ``(typename, id, rows)`` in (typename, id)
        order (the ``state_address`` index gives that order without sorting, so memory holds one address)."""
        current: tuple[str, str] | None = None
        rows: list[StateRow] = []
        try:
            for row in self._db.execute("SELECT * FROM state ORDER BY typename, id, rowid"):
                state = StateRow(*row)
                if (state.typename, state.id) != current:
                    if current is not None:
                        yield current[0], current[1], rows
                    current, rows = (state.typename, state.id), []
                rows.append(state)
        except sqlite3.DatabaseError as error:
            raise SavepointError(f"{self.name} is damaged: reading table state failed ({error})") from error
        if current is not None:
            yield current[0], current[1], rows

    def ids(self, typename: str, after: str = "", limit: int = 100) -> list[str]:
        """A page of the ids of ``typename`` with state, in order: the first ``limit`` after ``after``."""
        try:
            return [id for (id,) in self._db.execute(
                "SELECT DISTINCT id FROM state WHERE typename = ? AND id > ? ORDER BY id LIMIT ?", (typename, after, limit))]
        except sqlite3.DatabaseError as error:
            raise SavepointError(f"{self.name} is damaged: reading table state failed ({error})") from error

    def counts_by_type(self) -> dict[str, dict[str, int]]:
        """Per function type: addresses with state, state values, pending messages, delayed messages, parked."""
        result: dict[str, dict[str, int]] = {}

        def add(query: str, what: str) -> None:
            for typename, n in self._db.execute(query):
                result.setdefault(typename, dict.fromkeys(("addresses", "values", "messages", "delayed", "parked"), 0))[what] = n

        add("SELECT typename, COUNT(DISTINCT id) FROM state GROUP BY typename", "addresses")
        add("SELECT typename, COUNT(*) FROM state GROUP BY typename", "values")
        add("SELECT target_type, COUNT(*) FROM messages GROUP BY target_type", "messages")
        add("SELECT target_type, COUNT(*) FROM timers GROUP BY target_type", "delayed")
        add("SELECT typename, COUNT(*) FROM parked GROUP BY typename", "parked")
        return dict(sorted(result.items()))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SavepointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
