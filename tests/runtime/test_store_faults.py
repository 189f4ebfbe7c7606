"""The embedded store on a full disk: a write fails as StoreFullError naming the data dir and its free
space, is rolled back whole, and the same epoch commits exactly once after space is freed.

The disk is a small tmpfs the test mounts, so this needs root (CI runs as root); elsewhere it is skipped.
"""

from __future__ import annotations

import asyncio
import os
import typing
from pathlib import Path

import pytest

from support.disks import fill, mounted, tmpfs
from pystatefun.backends.embedded import DataDirError, SQLiteStore, StoreFullError
from pystatefun.runtime.envelope import Envelope, address
from pystatefun.runtime.epoch import DeadLetter, EgressRecord, Epoch, IdempotencyRecord, StoredValue, Timer
from pystatefun.runtime.specs import StateSpec
from pystatefun.wire.request_reply_pb2 import TypedValue

DISK_BYTES = 2 * 1024 * 1024
BIG = 512 * 1024  # larger than what the WAL has allocated already, so writing it needs new blocks


@pytest.fixture
def small_disk(tmp_path: Path) -> typing.Iterator[Path]:
    with tmpfs(tmp_path / "disk", f"size={DISK_BYTES}", "filling a small tmpfs") as disk:
        yield disk


def typed(value: bytes) -> TypedValue:
    return TypedValue(typename="t/bytes", has_value=True, value=value)


def big_epoch(number: int) -> Epoch:
    """An epoch touching every table an epoch writes, with one large state value."""
    epoch = Epoch(number)
    key = ("t/f", "a")
    epoch.state[key] = ({"big": StoredValue(typed(os.urandom(BIG)))}, {"big"})
    epoch.partitions_of_state[key] = 0
    message = Envelope(address("t/f", "b"), address("t/f", "a"), typed(b"hello"), seq=1)
    epoch.volatile[message] = None
    epoch.timers_added[1] = Timer(1, 0, 10_000, Envelope(address("t/f", "c"), None, typed(b"later")), "token")
    epoch.egress.append(EgressRecord("eg", "topic", b"record"))
    epoch.idempotency.append(IdempotencyRecord("key", 10_000, 202, b""))
    epoch.dead_letters.append(DeadLetter("t/none", "x", None, typed(b"lost"), "no such function", 1))
    epoch.source_offsets[("src", "topic", 0)] = 42
    epoch.parked[("t/f", "d")] = "failing"
    return epoch


def rows(store: SQLiteStore) -> dict[str, int]:
    tables = ["state", "inbox", "timers", "egress", "idempotency", "dead_letters", "source_offsets", "parked"]
    return {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}


ONCE = {t: 1 for t in ["state", "inbox", "timers", "egress", "idempotency", "dead_letters", "source_offsets", "parked"]}
NOTHING = dict.fromkeys(ONCE, 0)


@pytest.mark.parametrize("committing", ["commit", "commit_async"])
def test_a_full_disk_refuses_the_epoch_whole_and_the_same_epoch_commits_once_after_space_is_freed(small_disk, committing):
    async def scenario() -> None:
        store = SQLiteStore(small_disk / "data", 4)
        try:
            epoch = big_epoch(1)
            filler = fill(small_disk)

            async def commit() -> None:
                if committing == "commit":
                    store.commit(epoch, lambda id: 0)
                else:
                    await store.commit_async(epoch, lambda id: 0)

            with pytest.raises(StoreFullError) as refused:
                await commit()
            message = str(refused.value)
            assert str(small_disk / "data") in message and "full" in message
            assert refused.value.free_bytes < BIG and f"{refused.value.free_bytes} bytes free" in message
            assert rows(store) == NOTHING  # nothing half-written
            assert epoch.egress[0].seq is None  # the epoch is as it was
            # still full: refused again, and the store is still usable for reads meanwhile
            with pytest.raises(StoreFullError):
                await commit()
            assert store.load_state("t/f", "a") == {}

            filler.unlink()
            await commit()
            assert rows(store) == ONCE
            assert store.load_state("t/f", "a")["big"].value.value == epoch.state[("t/f", "a")][0]["big"].value.value
            assert store.unread_egress("eg", "topic", 0, 10) == [(epoch.egress[0].seq, b"record")]
            store.commit(Epoch(2, egress=[EgressRecord("eg", "topic", b"next")]), lambda id: 0)
            assert [seq for seq, _ in store.unread_egress("eg", "topic", 0, 10)] == [epoch.egress[0].seq, epoch.egress[0].seq + 1]
        finally:
            store.close()

    asyncio.run(scenario())


def test_the_writes_outside_epochs_raise_store_full_too(small_disk):
    async def scenario() -> None:
        store = SQLiteStore(small_disk / "data", 4)
        try:
            epoch = big_epoch(1)
            epoch.state[("t/f", "a")][0]["big"].expire_at = 5
            store.commit(epoch, lambda id: 0)
            filler = fill(small_disk)
            many = [StateSpec(f"spec-{i}-" + "x" * 2000, "t/bytes", 0, 0) for i in range(300)]
            with pytest.raises(StoreFullError, match="full"):
                store.save_function_specs("t/f", many)
            assert store.function_specs() == {}
            # sweeping and dropping delivered egress records free space in the end, but write to the WAL first
            with pytest.raises(StoreFullError):
                store.sweep(now_ms=10)
            with pytest.raises(StoreFullError):
                store.drop_egress("eg", 10)
            filler.unlink()
            assert store.sweep(now_ms=10) == 1
            store.drop_egress("eg", 10)
            store.save_function_specs("t/f", many[:2])
            assert rows(store)["state"] == 0 and rows(store)["egress"] == 0
            assert len(store.function_specs()["t/f"]) == 2
        finally:
            store.close()

    asyncio.run(scenario())


# -- a data dir that cannot be used: one-line errors at open ----------------------------------------


def test_a_data_dir_under_a_regular_file_names_the_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DataDirError) as refused:
        SQLiteStore(tmp_path / "file" / "data", 4)
    assert str(refused.value).startswith(f"cannot create data dir {tmp_path / 'file' / 'data'}: {tmp_path / 'file'} is a file")
    assert "give --data-dir the path of a directory" in str(refused.value)


def test_a_database_file_holding_garbage_is_refused_and_the_data_dir_is_left_free(tmp_path):
    (tmp_path / "pystatefun.db").write_bytes(b"not a database at all" * 1000)
    with pytest.raises(DataDirError) as refused:
        SQLiteStore(tmp_path, 4)
    assert f"{tmp_path / 'pystatefun.db'} is not a pystatefun database or is damaged" in str(refused.value)
    assert "move the file away" in str(refused.value)
    (tmp_path / "pystatefun.db").rename(tmp_path / "garbage.db")
    SQLiteStore(tmp_path, 4).close()  # the refusal released the data dir's lock


def test_a_database_damaged_past_its_first_page_is_refused(tmp_path):
    async def write_some() -> None:
        store = SQLiteStore(tmp_path, 4)
        store.commit(big_epoch(1), lambda id: 0)
        store.close()

    asyncio.run(write_some())
    database = tmp_path / "pystatefun.db"
    assert not (tmp_path / "pystatefun.db-wal").exists()  # closing checkpointed everything into the file
    with open(database, "r+b") as f:
        f.seek(4096)  # keep the header page, overwrite the tables' pages
        f.write(b"\xa5" * 16384)
    with pytest.raises(DataDirError, match="is not a pystatefun database or is damaged"):
        SQLiteStore(tmp_path, 4)


def test_a_read_only_data_dir_says_so(tmp_path):
    with tmpfs(tmp_path / "ro", "ro", "a read-only tmpfs") as folder:
        for data_dir in (folder, folder / "data"):  # to take, and to create
            with pytest.raises(DataDirError) as refused:
                SQLiteStore(data_dir, 4)
            assert str(refused.value) == (f"data dir {data_dir} is on a read-only file system: remount it read-write, "
                                          f"or give --data-dir a directory on a writable disk")


def test_a_full_disk_at_open_is_store_full(small_disk):
    fill(small_disk)
    with pytest.raises(StoreFullError) as refused:
        SQLiteStore(small_disk / "data", 4)
    assert str(small_disk / "data") in str(refused.value)


def test_a_read_only_database_file_in_a_writable_data_dir_is_refused_at_open_not_at_the_first_commit(tmp_path):
    SQLiteStore(tmp_path, 4).close()
    database = tmp_path / "pystatefun.db"
    with mounted(database, "--bind", "-o", "ro", str(database), why="a read-only bind mount"):
        with pytest.raises(DataDirError) as refused:
            SQLiteStore(tmp_path, 4)
        assert str(refused.value).startswith(f"cannot write {database}")
        assert "writable by this process, or give --data-dir another directory" in str(refused.value)
