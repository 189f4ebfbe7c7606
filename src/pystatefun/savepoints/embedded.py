"""Savepoints of the embedded backend: taken from a data dir's SQLite database, restored into a new one.

**Why a snapshot of the database is a consistent cut.** Everything an application is lives in the data
dir's database (backends/embedded.py): messages are in the inbox from the moment they are accepted until
the epoch holding their effects commits, and that same SQLite transaction deletes them from the inbox and
writes the state, timers, egress records and ingress positions they caused. So every committed state of
the database is an epoch boundary, at which each message is either in the inbox (its effects not in the
state) or gone (its effects in the state), never both. A read transaction sees exactly one committed
state: in WAL mode it does not stop the runtime from committing meanwhile, which is what makes an online
savepoint possible (``take_online``), and from a stopped data dir (``take_offline``) it is the last one.

Restoring writes the rows into a new database of the chosen partition count, each address at
``partition_of(id, partitions)``, the same hash the runtime uses (a timer at its sender's, as the runtime
keeps it); messages keep their order (the inbox's sequence numbers are given in savepoint order), timers
and egress records get new numbers. The database is built beside the data dir and moved into it only
when complete, so an interrupted restore leaves no half-restored application behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
import typing
from pathlib import Path

from pystatefun.backends.embedded import DATABASE_NAME, DataDirError, SQLiteStore
from pystatefun.config import KafkaEgress, KinesisEgress, Module, PlaygroundEgress
from pystatefun.io.playground import EGRESS_ID as PLAYGROUND_EGRESS_ID
from pystatefun.runtime.envelope import partition_of
from pystatefun.savepoints import storage
from pystatefun.savepoints.format import (
    DeadLetterRow,
    KAFKA_EGRESS,
    KINESIS_EGRESS,
    PLAYGROUND_EGRESS,
    BATCH_ROWS,
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
    SpecRow,
    StateRow,
    TimerRow,
)

# what each savepoint table is read from, in an order that keeps each kind's order
_EXPORTS: tuple[tuple[type, str], ...] = (
    (StateRow, "SELECT typename, id, name, value, expire_at FROM state ORDER BY typename, id, name"),
    (MessageRow, "SELECT target_type, target_id, caller_type, caller_id, value FROM inbox ORDER BY seq"),
    (TimerRow, "SELECT due_ms, target_type, target_id, caller_type, caller_id, token, value FROM timers "
               "ORDER BY due_ms, timer_id"),
    (ParkedRow, "SELECT typename, id, reason FROM parked ORDER BY typename, id"),
    (DeadLetterRow, "SELECT target_type, target_id, caller_type, caller_id, value, reason, at_ms FROM dead_letters "
                    "ORDER BY seq"),
    (IdempotencyRow, "SELECT key, expires_ms, status, body, content_type, request FROM idempotency "
                     "WHERE expires_ms > :now ORDER BY key"),
    (SpecRow, "SELECT typename, name, type_typename, mode, ttl_ms FROM function_specs ORDER BY typename, name"),
    (PositionRow, "SELECT source, topic, partition, next_offset FROM source_offsets ORDER BY source, topic, partition"),
    (EgressRow, "SELECT egress_id, topic, payload FROM egress ORDER BY seq"),  # and the kind: see _export
    (KinesisPositionRow, "SELECT source, stream, shard, position FROM source_positions ORDER BY source, stream, shard"),
)


def egress_kinds(module: Module) -> dict[str, str]:
    """What each egress of ``module`` keeps in the data dir: Kafka, Kinesis or playground records."""
    kinds = {KafkaEgress: KAFKA_EGRESS, KinesisEgress: KINESIS_EGRESS, PlaygroundEgress: PLAYGROUND_EGRESS}
    return {spec.id: kinds[type(spec)] for spec in module.egresses if type(spec) in kinds}


def _kinds(kinds: typing.Mapping[str, str] | None) -> typing.Callable[[str], str]:
    """The kind of an egress's records: as the module says when it is known, else by the id (the playground
    egress's own id, or a Kafka egress: a Kafka egress given the playground's id needs the module)."""
    known = dict(kinds or {})
    return lambda egress_id: known.get(egress_id) or (PLAYGROUND_EGRESS if egress_id == PLAYGROUND_EGRESS_ID else KAFKA_EGRESS)


def _export(db: sqlite3.Connection, writer: SavepointWriter, progress: Progress | None,
            kind_of: typing.Callable[[str], str]) -> None:
    """Copies every table inside one read transaction of ``db`` (the caller began it)."""
    now = int(time.time() * 1000)
    for row_class, query in _EXPORTS:
        cursor = db.execute(query, {"now": now}) if ":now" in query else db.execute(query)
        done = 0
        while batch := cursor.fetchmany(BATCH_ROWS):
            if row_class is EgressRow:
                writer.write(EgressRow(egress_id, topic, payload, kind_of(egress_id)) for egress_id, topic, payload in batch)
            else:
                writer.write(row_class(*row) for row in batch)
            done += len(batch)
            if progress is not None:
                progress(row_class.__name__, done)


def _read_only(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)


def _meta(db: sqlite3.Connection) -> dict[str, str]:
    return dict(db.execute("SELECT key, value FROM meta"))


def _take(database: Path, url: str, application: str, mode: str, progress: Progress | None,
          kinds: typing.Mapping[str, str] | None) -> Manifest:
    db = _read_only(database)
    try:
        db.execute("BEGIN")  # one snapshot for every table; the runtime goes on committing in the WAL
        partitions = int(_meta(db)["partitions"])  # the first read fixes the snapshot
        with storage.writing(url) as path:
            writer = SavepointWriter(path)
            try:
                _export(db, writer, progress, _kinds(kinds))
                return writer.finish(application=application, source_backend="embedded", partitions=partitions,
                                     mode=mode, created_ms=int(time.time() * 1000))
            except BaseException:
                writer.abort()
                raise
    except sqlite3.Error as error:
        raise SavepointError(f"cannot read {database} ({error})") from error
    finally:
        db.close()


def take_offline(data_dir: Path, url: str, progress: Progress | None = None,
                 kinds: typing.Mapping[str, str] | None = None) -> Manifest:
    """A savepoint of a stopped application's data dir. Refused while a runtime uses the data dir: take an
    online one from its admin API instead (``take_online``), or stop it first. ``kinds``: what its egresses
    keep (``egress_kinds(module)``), when known (else a record of an egress other than the playground's is
    taken for a Kafka one, which a Kinesis egress takes back as its own: EgressRow.payload_as)."""
    database = data_dir / DATABASE_NAME
    if not database.is_file():
        raise SavepointError(f"{data_dir} holds no pystatefun application (no {DATABASE_NAME}): give the data dir "
                             f"that `pystatefun run --data-dir` used")
    # the runtime's own lock: a data dir in use is not a stopped one (an online savepoint is the way)
    try:
        store = SQLiteStore(data_dir, partitions=_stored_partitions(database))
    except DataDirError as error:
        raise SavepointError(f"{error}; or take an online savepoint from its admin API: pystatefun savepoint "
                             f"create --admin URL PATH") from None
    try:
        return _take(database, url, data_dir.resolve().name, "offline", progress, kinds)
    finally:
        store.close()


def _stored_partitions(database: Path) -> int:
    db = _read_only(database)
    try:
        return int(_meta(db)["partitions"])
    except (sqlite3.Error, KeyError, ValueError) as error:
        raise SavepointError(f"{database} is not a pystatefun database or is damaged ({error})") from None
    finally:
        db.close()


def take_online(store: SQLiteStore, url: str, module: Module, mode: str = "online",
                progress: Progress | None = None) -> Manifest:
    """A savepoint of the running application of ``module`` (in a thread: it reads the whole database).
    The read snapshot is the last committed epoch when it begins; the runtime goes on meanwhile
    (stop-with-savepoint stops it before, and then nothing changes)."""
    kinds = egress_kinds(module)
    return _take(store.path, url, store.path.parent.resolve().name, mode, progress, kinds)


def restored_from(data_dir: Path) -> str | None:
    """The savepoint URL a data dir was restored from (None: not restored, or no application there)."""
    database = data_dir / DATABASE_NAME
    if not database.is_file():
        return None
    db = _read_only(database)
    try:
        return _meta(db).get("restored_from_url")
    except sqlite3.Error:
        return None
    finally:
        db.close()


def restore(url: str, data_dir: Path, partitions: int | None = None, progress: Progress | None = None,
            kinds: typing.Mapping[str, str] | None = None) -> Manifest:
    """Restores the savepoint at ``url`` into the new data dir ``data_dir`` with ``partitions`` partitions
    (None: as many as the application it was taken from). Refused when the data dir already holds an
    application. ``kinds``: what the new application's egresses keep (``egress_kinds(module)``); an egress
    record of the other kind is converted (a playground egress gets a Kafka record's value)."""
    database = data_dir / DATABASE_NAME
    if database.exists():
        raise SavepointError(f"{data_dir} already holds an application: restore into a new --data-dir (or move "
                             f"{data_dir} away first; nothing was changed)")
    with storage.reading(url) as path:
        reader = SavepointReader(path, url)
        try:
            reader.verify(None if progress is None else lambda n: progress("verified", n))
            partitions = partitions or reader.manifest.partitions
            building = data_dir.parent / f".{data_dir.name}.restoring"
            shutil.rmtree(building, ignore_errors=True)  # left by a restore that was killed
            store = SQLiteStore(building, partitions)
            try:
                _import(store, reader, partitions, progress, _kinds(kinds))
                store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                store.close()
            data_dir.mkdir(parents=True, exist_ok=True)
            if database.exists():  # another restore or runtime got there meanwhile
                raise SavepointError(f"{data_dir} already holds an application: restore into a new --data-dir")
            os.replace(building / DATABASE_NAME, database)
            with contextlib.suppress(FileNotFoundError):
                for leftover in (f"{DATABASE_NAME}-wal", f"{DATABASE_NAME}-shm"):
                    (building / leftover).unlink()
            shutil.rmtree(building, ignore_errors=True)
            return reader.manifest
        finally:
            reader.close()


def _import(store: SQLiteStore, reader: SavepointReader, partitions: int, progress: Progress | None,
            kind_of: typing.Callable[[str], str]) -> None:
    db = store.db

    def insert(table: str, statement: str, rows: typing.Iterable[tuple]) -> None:
        batch: list[tuple] = []
        done = 0
        for row in rows:
            batch.append(row)
            if len(batch) == BATCH_ROWS:
                db.executemany(statement, batch)
                done += len(batch)
                batch.clear()
                if progress is not None:
                    progress(table, done)
        if batch:
            db.executemany(statement, batch)
            done += len(batch)
        if progress is not None:
            progress(table, done)

    def rows(table: str) -> typing.Iterator[typing.Any]:
        return reader.rows(table)  # type: ignore[return-value]

    db.execute("BEGIN")
    insert("state", "INSERT INTO state VALUES (?, ?, ?, ?, ?, ?)",
           ((r.typename, r.id, r.name, partition_of(r.id, partitions), r.value, r.expire_at) for r in rows("state")))
    # (a savepoint keeps no trace context: messages restored from one are not traced)
    insert("messages", "INSERT INTO inbox (seq, partition, target_type, target_id, caller_type, caller_id, value) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)",
           ((seq, partition_of(r.target_id, partitions), r.target_type, r.target_id, r.caller_type, r.caller_id, r.value)
            for seq, r in enumerate(rows("messages"), 1)))
    # a timer lives in its sender's partition, which owns its cancellation token (runtime/effects.py); one
    # without a sender in its target's
    insert("timers", "INSERT INTO timers (timer_id, partition, due_ms, target_type, target_id, caller_type, caller_id, "
           "token, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
           ((timer_id, partition_of((r.caller_id or "") if r.caller_type is not None else r.target_id, partitions),
             r.due_ms, r.target_type, r.target_id, r.caller_type, r.caller_id, r.token, r.value)
            for timer_id, r in enumerate(rows("timers"), 1)))
    insert("parked", "INSERT INTO parked VALUES (?, ?, ?)", rows("parked"))
    insert("dead_letters", "INSERT INTO dead_letters (target_type, target_id, caller_type, caller_id, value, reason, at_ms) "
           "VALUES (?, ?, ?, ?, ?, ?, ?)", rows("dead_letters"))
    insert("idempotency", "INSERT INTO idempotency (key, expires_ms, status, body, content_type, request) "
           "VALUES (?, ?, ?, ?, ?, ?)", rows("idempotency"))
    insert("function_specs", "INSERT INTO function_specs VALUES (?, ?, ?, ?, ?)", rows("function_specs"))
    insert("ingress_positions", "INSERT INTO source_offsets VALUES (?, ?, ?, ?)", rows("ingress_positions"))
    insert("kinesis_positions", "INSERT INTO source_positions VALUES (?, ?, ?, ?)", rows("kinesis_positions"))
    insert("egress", "INSERT INTO egress (seq, egress_id, topic, payload) VALUES (?, ?, ?, ?)",
           ((seq, r.egress_id, r.topic, r.payload_as(kind_of(r.egress_id))) for seq, r in enumerate(rows("egress"), 1)))
    manifest = reader.manifest
    db.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("restored_from_url", reader.name),
        ("restored_from", f"{reader.name} ({manifest.source_backend} application {manifest.application}, "
                          f"taken {manifest.created_at})"),
    ])
    db.execute("COMMIT")
