"""The embedded backend: the whole log and every store in one SQLite database (WAL) in the data dir.

One SQLite transaction per epoch is the atomic commit. With ``synchronous=FULL`` (the default) a commit
is on disk when it returns, so a ``kill -9`` (or a power cut) at any moment loses nothing that was
acknowledged; restarting with the same data dir re-delivers the inbox and re-arms the timers.

The running runtime writes an epoch's rows on the loop and leaves the COMMIT, the WAL write and its
fsync, to a thread of its own (``commit_async``, which says why the rows stay on the loop): the fsync
takes about as long as the rest of a busy epoch, and the event loop goes on processing the next epoch
meanwhile. One lock serializes every use of the connection, so a read on the loop made after a commit
began waits for it and sees its writes.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import errno
import functools
import fcntl
import os
import secrets
import shutil
import sqlite3
import threading
import typing
from dataclasses import dataclass
from pathlib import Path

from pystatefun.runtime.envelope import Envelope, address
from pystatefun.runtime.epoch import DeadLetter, Epoch, IdempotencyRecord, StoredValue, StoreFullError, Timer
from pystatefun.sdk.address import SdkAddress
from pystatefun.runtime.specs import StateSpec
from pystatefun.wire.request_reply_pb2 import TypedValue

DATABASE_NAME = "pystatefun.db"  # in the data dir
SCHEMA_VERSION = "2"  # 2: idempotency records keep the content type of a reply

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- messages accepted but whose effects are not committed yet, in arrival order
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY, partition INTEGER NOT NULL,
    target_type TEXT NOT NULL, target_id TEXT NOT NULL, caller_type TEXT, caller_id TEXT, value BLOB NOT NULL,
    trace TEXT);
-- an address's messages that wait on disk only, beyond what its mailbox holds in memory (spilled)
CREATE INDEX IF NOT EXISTS inbox_target ON inbox (target_type, target_id, seq);
CREATE TABLE IF NOT EXISTS state (
    typename TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, partition INTEGER NOT NULL,
    value BLOB NOT NULL, expire_at INTEGER, PRIMARY KEY (typename, id, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS state_expiry ON state (expire_at) WHERE expire_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS timers (
    timer_id INTEGER PRIMARY KEY, partition INTEGER NOT NULL, due_ms INTEGER NOT NULL,
    target_type TEXT NOT NULL, target_id TEXT NOT NULL, caller_type TEXT, caller_id TEXT, token TEXT,
    value BLOB NOT NULL, trace TEXT);
CREATE TABLE IF NOT EXISTS function_specs (
    typename TEXT NOT NULL, name TEXT NOT NULL, type_typename TEXT NOT NULL, mode INTEGER NOT NULL,
    ttl_ms INTEGER NOT NULL, PRIMARY KEY (typename, name));
CREATE TABLE IF NOT EXISTS egress (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, egress_id TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS egress_topic ON egress (egress_id, topic, seq);
CREATE INDEX IF NOT EXISTS egress_order ON egress (egress_id, seq);
-- where each external source (a Kafka ingress's topic partition) continues: committed with the epochs
CREATE TABLE IF NOT EXISTS source_offsets (
    source TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (source, topic, partition)) WITHOUT ROWID;
-- where each shard of a Kinesis ingress's streams continues (text: io/kinesis/ingress.py says what it holds)
CREATE TABLE IF NOT EXISTS source_positions (
    source TEXT NOT NULL, stream TEXT NOT NULL, shard TEXT NOT NULL, position TEXT NOT NULL,
    PRIMARY KEY (source, stream, shard)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, expires_ms INTEGER NOT NULL, status INTEGER NOT NULL, body BLOB NOT NULL,
    content_type TEXT NOT NULL, request TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, target_type TEXT NOT NULL, target_id TEXT NOT NULL,
    caller_type TEXT, caller_id TEXT, value BLOB NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS parked (
    typename TEXT NOT NULL, id TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (typename, id));
"""


@dataclass(slots=True)
class InboxRow:
    seq: int
    partition: int
    target_type: str
    target_id: str
    caller_type: str | None
    caller_id: str | None
    value: bytes
    trace: str | None  # the W3C traceparent of its sender's span (runtime/envelope.py)


@dataclass(slots=True)
class TimerRow:
    timer_id: int
    partition: int
    due_ms: int
    target_type: str
    target_id: str
    caller_type: str | None
    caller_id: str | None
    token: str | None
    value: bytes
    trace: str | None


@dataclass(slots=True)
class Recovery:
    inbox: typing.Iterable[Envelope]  # read as it is routed: a large inbox is never all in memory
    inbox_size: int
    timers: list[Timer]
    parked: dict[tuple[str, str], str]
    next_seq: int
    next_timer_id: int


def _caller(typename: str | None, id: str | None) -> SdkAddress | None:
    return None if typename is None else address(typename, id)


def _envelope(row: InboxRow) -> Envelope:
    return Envelope(address(row.target_type, row.target_id), _caller(row.caller_type, row.caller_id),
                    TypedValue.FromString(row.value), row.seq, row.trace)


class DataDirError(RuntimeError):
    """The data directory cannot be used for this application (for example its partition count differs)."""


def _disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk is full: SQLITE_FULL (SQLite's own code for ENOSPC), or ENOSPC."""
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == sqlite3.SQLITE_FULL  # the primary code of an extended one
    return isinstance(error, OSError) and error.errno == errno.ENOSPC


def _full(folder: Path) -> StoreFullError:
    """The error for a full disk under ``folder``, with the free space of the disk it is (or would be) on."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    return StoreFullError(folder, shutil.disk_usage(existing).free)


def _os_fault(folder: Path, error: OSError) -> RuntimeError:
    """What an OSError met creating or taking the data dir means for the user, as one line."""
    if _disk_full(error):
        return _full(folder)
    if error.errno == errno.EROFS:
        return DataDirError(f"data dir {folder} is on a read-only file system: remount it read-write, "
                            f"or give --data-dir a directory on a writable disk")
    if error.errno in (errno.EACCES, errno.EPERM):
        return DataDirError(f"data dir {folder} is not writable by this process ({error.strerror}): let the user "
                            f"running pystatefun write it (chown/chmod), or give --data-dir a directory it can write")
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        return DataDirError(f"cannot create data dir {folder}: {blocker} is a file, not a directory; "
                            f"give --data-dir the path of a directory (or of one that can be created)")
    return DataDirError(f"cannot use data dir {folder} ({error.strerror or error}): give --data-dir a directory "
                        f"this process can create and write")


def _unwritable(path: Path, reason: str) -> DataDirError:
    return DataDirError(f"cannot write {path} or its -wal/-shm files beside it ({reason}): make them and the data "
                        f"dir writable by this process, or give --data-dir another directory")


def _database_fault(path: Path, error: sqlite3.Error) -> RuntimeError:
    """What SQLite's refusal to open or set up the database means for the user, as one line."""
    if _disk_full(error):
        return _full(path.parent)
    code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return DataDirError(f"{path} is not a pystatefun database or is damaged ({error}): restore the data dir "
                            f"from a backup, or move the file away to start with an empty store (its state and "
                            f"unprocessed messages are then lost)")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return _unwritable(path, str(error))
    return DataDirError(f"cannot open {path} ({error}): check the disk of the data dir, or give --data-dir "
                        f"another directory")


def _lock_data_dir(folder: Path) -> int:
    """Takes the data dir for this process, or refuses: two runtimes on one database would each re-deliver
    the other's inbox. An flock dies with its process, so a ``kill -9`` leaves no stale lock behind."""
    fd = os.open(folder / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise DataDirError(
            f"{folder} is in use by process {holder}: stop it first, or give this runtime its own --data-dir"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:  # a full disk: the caller says so; the lock goes with the descriptor
        os.close(fd)
        raise
    return fd


def _serialized(method: typing.Callable) -> typing.Callable:
    """Runs ``method`` holding the store's connection lock (see the module docstring)."""

    @functools.wraps(method)
    def locked(self: SQLiteStore, *args: typing.Any, **kwargs: typing.Any) -> typing.Any:
        with self._connection_lock:
            return method(self, *args, **kwargs)

    return locked


class SQLiteStore:
    """The log and the stores of one application, in ``<data_dir>/pystatefun.db`` (DATABASE_NAME)."""

    def __init__(self, data_dir: Path | str, partitions: int, synchronous: str = "FULL"):
        """Opens (or creates) the store in ``data_dir``. A data dir that cannot be created, written or read
        raises DataDirError (StoreFullError for a full disk) with a one-line message saying what to do."""
        folder = Path(data_dir)
        self.path = folder / DATABASE_NAME
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_data_dir(folder)
        except OSError as error:
            raise _os_fault(folder, error) from error
        db: sqlite3.Connection | None = None
        try:
            # SQLite opens a file it cannot write read-only without a word, and the first commit would fail
            # inside the running runtime: say so now
            if self.path.exists() and not os.access(self.path, os.W_OK):
                raise _unwritable(self.path, "read-only file")
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per epoch
            db = self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.executescript(_SCHEMA)
            self.partitions = self._check_meta(partitions)
            # data dirs made before idempotency records kept their request's digest get the column (its
            # empty default: such records are answered to any retry, as they were)
            if "request" not in {row[1] for row in self.db.execute("PRAGMA table_info(idempotency)")}:
                self.db.execute("ALTER TABLE idempotency ADD COLUMN request TEXT NOT NULL DEFAULT ''")
            # data dirs made before messages carried their trace context get the columns (NULL: not traced)
            for table in ("inbox", "timers"):
                if "trace" not in {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN trace TEXT")
            # egress records are numbered here, not by SQLite, so that a committed epoch's records carry
            # their seq (the playground egress deletes a record by it once read); AUTOINCREMENT's high-water
            # mark keeps numbers from before this scheme unique
            self._egress_seq: int = self.db.execute(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'egress'), 0), "
                "COALESCE((SELECT MAX(seq) FROM egress), 0))"
            ).fetchone()[0]
        except BaseException as error:
            if db is not None:
                db.close()
            os.close(self._lock)  # the data dir is free again for whoever fixes it
            if isinstance(error, sqlite3.Error):
                raise _database_fault(self.path, error) from error
            raise
        self._connection_lock = threading.Lock()
        self._committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pystatefun-commit")

    def _check_meta(self, partitions: int) -> int:
        meta = dict(self.db.execute("SELECT key, value FROM meta"))
        if not meta:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO meta VALUES (?, ?)", [("schema", SCHEMA_VERSION), ("partitions", str(partitions))]
            )
            self.db.execute("COMMIT")
            meta = {"schema": SCHEMA_VERSION, "partitions": str(partitions)}
        if "instance" not in meta:  # data dirs made before it existed get one too
            meta["instance"] = secrets.token_hex(8)
            self.db.execute("INSERT INTO meta VALUES ('instance', ?)", (meta["instance"],))
        # names this data dir outside it: Kafka transactional ids and groups of its egresses
        self.instance: str = meta["instance"]
        if meta.get("schema") != SCHEMA_VERSION:
            raise DataDirError(f"{self.path} has schema version {meta.get('schema')}, this pystatefun writes {SCHEMA_VERSION}")
        stored = int(meta["partitions"])
        if stored != partitions:
            raise DataDirError(
                f"{self.path} was created with {stored} partitions, not {partitions}: addresses map to partitions "
                f"by hash, so the count is fixed for an application. Run with --partitions {stored} (or move it to "
                f"another count with a savepoint: docs/savepoints.md)."
            )
        return stored

    @contextlib.contextmanager
    def _transaction(self) -> typing.Iterator[sqlite3.Connection]:
        """One write transaction: committed when the block ends, rolled back whole if anything fails, and a
        full disk raised as StoreFullError. Every write to the store goes through here."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException as error:
            self._roll_back(error)
            raise

    def _roll_back(self, error: BaseException) -> None:
        """Ends a transaction that failed with ``error``: rolls back what is left of it, and raises a full
        disk as StoreFullError (the caller raises any other error itself)."""
        # SQLite rolls the transaction back itself on some errors (SQLITE_FULL at COMMIT among them); a
        # ROLLBACK then fails with "no transaction is active" and would hide the real error
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        if _disk_full(error):
            raise _full(self.path.parent) from error

    # -- recovery -----------------------------------------------------------------------------------

    def recover(self) -> Recovery:
        """What a restarted runtime continues from: the inbox in order, the timers, the parked addresses.
        (Called before processing starts, so without the connection lock: the calls it makes take it.)"""
        inbox = (_envelope(row) for row in self.inbox())
        timers = [
            Timer(r.timer_id, r.partition, r.due_ms,
                  Envelope(address(r.target_type, r.target_id), _caller(r.caller_type, r.caller_id),
                           TypedValue.FromString(r.value), trace=r.trace),
                  r.token)
            for r in self.timers()
        ]
        size = self.db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        return Recovery(inbox, size, timers, self.parked(), self.max_seq() + 1, self.max_timer_id() + 1)

    def inbox(self) -> typing.Iterator[InboxRow]:
        for row in self.db.execute("SELECT * FROM inbox ORDER BY seq"):
            yield InboxRow(*row)

    @_serialized
    def load_inbox(self, typename: str, id: str, after_seq: int, limit: int) -> list[Envelope]:
        """The next ``limit`` committed messages of one address after ``after_seq``, in order."""
        rows = self.db.execute(
            "SELECT * FROM inbox WHERE target_type = ? AND target_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (typename, id, after_seq, limit),
        )
        return [_envelope(InboxRow(*row)) for row in rows]

    @_serialized
    def max_seq(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM inbox").fetchone()[0]

    @_serialized
    def timers(self) -> list[TimerRow]:
        return [TimerRow(*row) for row in self.db.execute("SELECT * FROM timers ORDER BY due_ms, timer_id")]

    @_serialized
    def max_timer_id(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(timer_id), 0) FROM timers").fetchone()[0]

    @_serialized
    def function_specs(self) -> dict[str, dict[str, StateSpec]]:
        specs: dict[str, dict[str, StateSpec]] = {}
        for typename, name, type_typename, mode, ttl_ms in self.db.execute("SELECT * FROM function_specs"):
            specs.setdefault(typename, {})[name] = StateSpec(name, type_typename, mode, ttl_ms)
        return specs

    @_serialized
    def dead_letter_count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]

    @_serialized
    def dead_letters(self, after: int = 0, limit: int = 100) -> list[dict[str, typing.Any]]:
        """Dead letters after sequence number ``after``, oldest first, as plain data for the admin API."""
        rows = self.db.execute(
            "SELECT seq, target_type, target_id, caller_type, caller_id, value, reason, at_ms FROM dead_letters "
            "WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit),
        )
        letters = []
        for seq, target_type, target_id, caller_type, caller_id, value, reason, at_ms in rows:
            typed = TypedValue.FromString(value)
            letters.append({
                "seq": seq, "target": f"{target_type}/{target_id}" if target_id else target_type,
                "caller": f"{caller_type}/{caller_id}" if caller_type else None,
                "typename": typed.typename, "value_base64": base64.b64encode(typed.value).decode(),
                "reason": reason, "at_ms": at_ms,
            })
        return letters

    @_serialized
    def dead_letter(self, seq: int) -> DeadLetter | None:
        """Dead letter ``seq`` as the runtime made it (a replay sends it again), None when there is none."""
        row = self.db.execute("SELECT target_type, target_id, caller_type, caller_id, value, reason, at_ms "
                              "FROM dead_letters WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            return None
        target_type, target_id, caller_type, caller_id, value, reason, at_ms = row
        return DeadLetter(target_type, target_id, _caller(caller_type, caller_id), TypedValue.FromString(value),
                          reason, at_ms)

    @_serialized
    def addresses(self, typename: str, after: str = "", limit: int = 100) -> list[str]:
        """The ids of ``typename`` that have committed state, in order, after ``after`` (paging)."""
        rows = self.db.execute(
            "SELECT DISTINCT id FROM state WHERE typename = ? AND id > ? ORDER BY id LIMIT ?", (typename, after, limit)
        )
        return [id for (id,) in rows]

    @_serialized
    def counts(self) -> dict[str, typing.Any]:
        """Sizes for the metrics: dead letters, inbox, and egress records waiting per (egress, topic)."""
        egress = {(e, t): n for e, t, n in self.db.execute("SELECT egress_id, topic, COUNT(*) FROM egress GROUP BY egress_id, topic")}
        return {
            "dead_letters": self.db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0],
            "inbox": self.db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0],
            "egress": egress,
        }

    @_serialized
    def parked(self) -> dict[tuple[str, str], str]:
        return {(t, i): reason for t, i, reason in self.db.execute("SELECT typename, id, reason FROM parked")}

    # -- reads --------------------------------------------------------------------------------------

    @_serialized
    def load_state(self, typename: str, id: str) -> dict[str, StoredValue]:
        rows = self.db.execute("SELECT name, value, expire_at FROM state WHERE typename = ? AND id = ?", (typename, id))
        return {name: StoredValue(TypedValue.FromString(value), expire_at) for name, value, expire_at in rows}

    @_serialized
    def idempotency(self, key: str, now_ms: int) -> IdempotencyRecord | None:
        row = self.db.execute("SELECT key, expires_ms, status, body, content_type, request FROM idempotency "
                              "WHERE key = ? AND expires_ms > ?", (key, now_ms)).fetchone()
        return None if row is None else IdempotencyRecord(*row)

    # -- outside epochs: idempotent metadata, and the egress table's readers ---------------------------

    @_serialized
    def save_function_specs(self, typename: str, specs: typing.Iterable[StateSpec]) -> None:
        rows = [(typename, s.name, s.type_typename, s.mode, s.ttl_ms) for s in specs]
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO function_specs VALUES (?, ?, ?, ?, ?)", rows)

    @_serialized
    def unread_egress(self, egress_id: str, topic: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """The oldest ``limit`` committed records of a playground egress topic after ``after_seq``: (seq, payload)."""
        return self.db.execute(
            "SELECT seq, payload FROM egress WHERE egress_id = ? AND topic = ? AND seq > ? ORDER BY seq LIMIT ?",
            (egress_id, topic, after_seq, limit),
        ).fetchall()

    @_serialized
    def egress_batch(self, egress_id: str, limit: int) -> list[tuple[int, bytes]]:
        """The oldest ``limit`` committed records of an egress that forwards them (Kafka): (seq, payload)."""
        return self.db.execute(
            "SELECT seq, payload FROM egress WHERE egress_id = ? ORDER BY seq LIMIT ?", (egress_id, limit)
        ).fetchall()

    @_serialized
    def drop_egress(self, egress_id: str, up_to_seq: int) -> None:
        """Forgets the records of an egress up to ``up_to_seq``: they are delivered."""
        with self._transaction() as db:
            db.execute("DELETE FROM egress WHERE egress_id = ? AND seq <= ?", (egress_id, up_to_seq))

    @_serialized
    def source_offsets(self, source: str) -> dict[tuple[str, int], int]:
        """Where a source continues: (topic, partition) -> the offset of the next record to read."""
        return {(t, p): o for t, p, o in self.db.execute(
            "SELECT topic, partition, next_offset FROM source_offsets WHERE source = ?", (source,))}

    @_serialized
    def kinesis_positions(self, source: str) -> dict[tuple[str, str], str]:
        """Where a Kinesis ingress continues: (stream, shard) -> position."""
        return {(stream, shard): position for stream, shard, position in self.db.execute(
            "SELECT stream, shard, position FROM source_positions WHERE source = ?", (source,))}

    @_serialized
    def sweep(self, now_ms: int) -> int:
        """Reclaims expired state and idempotency records; returns how many state values went."""
        with self._transaction() as db:
            removed = db.execute("DELETE FROM state WHERE expire_at IS NOT NULL AND expire_at <= ?", (now_ms,)).rowcount
            db.execute("DELETE FROM idempotency WHERE expires_ms <= ?", (now_ms,))
        return removed

    # -- the epoch commit ---------------------------------------------------------------------------

    @_serialized
    def commit(self, epoch: Epoch, partition_of: typing.Callable[[str], int]) -> None:
        """Writes the whole epoch in one transaction, on the calling thread."""
        with self._transaction() as db:
            egress_seq = self._write(db, epoch, partition_of)
        self._written(epoch, egress_seq)

    async def commit_async(self, epoch: Epoch, partition_of: typing.Callable[[str], int]) -> None:
        """Writes the whole epoch in one transaction and returns once it is on disk: the statements run
        here, on the loop, and the COMMIT (the WAL write and its fsync) in the committer thread, while the
        loop goes on with the next epoch.

        Why the statements do not go to the thread as well: the sqlite3 module releases the GIL around
        every step of a statement, once per row, and a thread then waits for the busy loop to hand the GIL
        back, up to a switch interval (5 ms) each time. Under load a commit of a thousand rows took
        seconds that way, and every acknowledgement waited for it. Here they run back to back (about a
        millisecond for a thousand rows) and the thread needs the GIL once, after the disk is done.

        The lock is taken before this returns to the loop: what the loop reads next includes the epoch."""
        self._connection_lock.acquire()
        try:
            db = self.db
            try:
                db.execute("BEGIN IMMEDIATE")
                egress_seq = self._write(db, epoch, partition_of)
            except BaseException as error:
                self._roll_back(error)
                raise
            finished = asyncio.get_running_loop().run_in_executor(
                self._committer, self._commit_and_unlock, epoch, egress_seq)
        except BaseException:
            self._connection_lock.release()
            raise
        await finished

    def _commit_and_unlock(self, epoch: Epoch, egress_seq: int) -> None:
        """The committer thread's part of ``commit_async``: the COMMIT and its bookkeeping, both before the
        lock is released, so that a commit right after it numbers its egress records on from these."""
        try:
            self.db.execute("COMMIT")
            self._written(epoch, egress_seq)
        except BaseException as error:
            self._roll_back(error)
            raise
        finally:
            self._connection_lock.release()

    def _written(self, epoch: Epoch, egress_seq: int) -> None:
        """After the COMMIT: the epoch's egress records learn their numbers (the playground egress deletes
        a record by it once read)."""
        for number, record in enumerate(epoch.egress, self._egress_seq + 1):
            record.seq = number
        self._egress_seq = egress_seq

    def _write(self, db: sqlite3.Connection, epoch: Epoch, partition_of: typing.Callable[[str], int]) -> int:
        """The statements of an epoch's transaction; returns the number of its last egress record.
        Nothing here changes the epoch or this store's bookkeeping: a transaction that fails (a full disk)
        leaves both as they were, and the same epoch can be written again."""
        if epoch.consumed:
            db.executemany("DELETE FROM inbox WHERE seq = ?", [(seq,) for seq in epoch.consumed])
        if epoch.volatile:
            rows = []
            for envelope in epoch.volatile:
                target, caller = envelope.target, envelope.caller
                rows.append((
                    envelope.seq, partition_of(target.id), target.typename, target.id,
                    caller.typename if caller else None, caller.id if caller else None, envelope.encode_value(),
                    envelope.trace,
                ))
            db.executemany("INSERT INTO inbox VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        if epoch.state:
            upserts, deletes = [], []
            for (typename, id), (values, changed) in epoch.state.items():
                partition = epoch.partitions_of_state[(typename, id)]
                for name in changed:
                    stored = values.get(name)
                    if stored is None:
                        deletes.append((typename, id, name))
                    else:
                        upserts.append((typename, id, name, partition, stored.value.SerializeToString(), stored.expire_at))
            if deletes:
                db.executemany("DELETE FROM state WHERE typename = ? AND id = ? AND name = ?", deletes)
            if upserts:
                db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?, ?, ?)", upserts)
        if epoch.timers_removed:
            db.executemany("DELETE FROM timers WHERE timer_id = ?", [(t,) for t in epoch.timers_removed])
        if epoch.timers_added:
            rows = []
            for timer in epoch.timers_added.values():
                target, caller = timer.envelope.target, timer.envelope.caller
                rows.append((
                    timer.timer_id, timer.partition, timer.due_ms, target.typename, target.id,
                    caller.typename if caller else None, caller.id if caller else None, timer.token,
                    timer.envelope.encode_value(), timer.envelope.trace,
                ))
            db.executemany("INSERT INTO timers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        seq = self._egress_seq
        if epoch.egress:
            rows = []
            for record in epoch.egress:
                seq += 1
                rows.append((seq, record.egress_id, record.topic, record.payload))
            db.executemany("INSERT INTO egress (seq, egress_id, topic, payload) VALUES (?, ?, ?, ?)", rows)
        if epoch.egress_read:
            db.executemany("DELETE FROM egress WHERE seq = ?", [(s,) for s in epoch.egress_read])
        if epoch.idempotency:
            db.executemany(
                "INSERT OR REPLACE INTO idempotency (key, expires_ms, status, body, content_type, request) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(r.key, r.expires_ms, r.status, r.body, r.content_type, r.request) for r in epoch.idempotency],
            )
        if epoch.dead_letters:
            rows = []
            for letter in epoch.dead_letters:
                caller = letter.caller
                rows.append((
                    letter.target_type, letter.target_id, caller.typename if caller else None,
                    caller.id if caller else None, letter.value.SerializeToString(), letter.reason, letter.at_ms,
                ))
            db.executemany(
                "INSERT INTO dead_letters (target_type, target_id, caller_type, caller_id, value, reason, at_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        if epoch.source_offsets:
            db.executemany(
                "INSERT OR REPLACE INTO source_offsets VALUES (?, ?, ?, ?)",
                [(source, topic, partition, offset) for (source, topic, partition), offset in epoch.source_offsets.items()],
            )
        if epoch.source_positions:
            db.executemany("INSERT OR REPLACE INTO source_positions VALUES (?, ?, ?, ?)",
                           [(*key, position) for key, position in epoch.source_positions.items()])
        for (typename, id), reason in epoch.parked.items():
            if reason is None:
                db.execute("DELETE FROM parked WHERE typename = ? AND id = ?", (typename, id))
            else:
                db.execute("INSERT OR REPLACE INTO parked VALUES (?, ?, ?)", (typename, id, reason))
        return seq

    def close(self) -> None:
        self._committer.shutdown()
        with self._connection_lock:
            self.db.close()
        os.close(self._lock)  # closing the descriptor releases the lock
