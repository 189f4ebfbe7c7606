"""The playground egress's reads: each committed record is read once, in order, and a read counts only
once its deletion has committed -- across crashes, restarts, and topics longer than what stays in memory.
A reader waiting for a record gets it with the commit that makes it."""

import asyncio
import sqlite3

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from pystatefun import StatefulFunctions, StringType, egress_message_builder, make_json_type
from pystatefun.io import playground
from pystatefun.io.http_server import Request
from pystatefun.io.playground import EGRESS_ID, PlaygroundEgress

from .harness import Clock, Node

RECORD = make_json_type("io.statefun.playground/EgressRecord")


def emitting_functions() -> StatefulFunctions:
    functions = StatefulFunctions()

    @functions.bind("t/emit")
    def emit(context, message):
        context.send_egress(egress_message_builder(EGRESS_ID, {"topic": "out", "payload": message.as_string()}, RECORD))

    return functions


async def started(data_dir) -> tuple[Node, PlaygroundEgress]:
    node = Node(data_dir, emitting_functions(), Clock())
    egress = PlaygroundEgress(node.runtime, node.store, ["out"])
    node.runtime.egresses[EGRESS_ID] = egress
    return await node.start(), egress


async def emit(node: Node, *payloads: str) -> None:
    for payload in payloads:
        node.send("t/emit", payload, payload, StringType)
    await node.commit()


def queued(node: Node, payload: str) -> None:
    """Sends ``payload`` to t/emit and commits it to the inbox before it runs."""
    node.send("t/emit", payload, payload, StringType)
    node.runtime.commit()


def egress_rows(node: Node) -> int:
    return node.store.db.execute("SELECT COUNT(*) FROM egress").fetchone()[0]


async def read(egress: PlaygroundEgress, wait: float = 0) -> str | None:
    query = {"wait": str(wait)} if wait else {}
    reply = await egress.handle(Request("GET", "/out", ["out"], query, CIMultiDictProxy(CIMultiDict()), b""))
    assert reply.status in (200, 404), reply
    return reply.body.decode() if reply.status == 200 else None


async def read_all(egress: PlaygroundEgress) -> list[str]:
    records = []
    while (record := await read(egress)) is not None:
        records.append(record)
    return records


def test_a_read_counts_only_once_its_deletion_commits(tmp_path):
    async def scenario():
        node, egress = await started(tmp_path)
        await emit(node, "a", "b", "c")
        first = asyncio.get_running_loop().create_task(read(egress))
        second = asyncio.get_running_loop().create_task(read(egress))
        await asyncio.sleep(0)  # both took a record, and wait for the epoch that deletes them
        assert node.runtime.epoch.egress_read and not first.done() and not second.done()
        await node.crash()  # before that epoch committed: neither reader got an answer
        first.cancel(), second.cancel()

        node, egress = await started(tmp_path)
        assert await read(egress) == "a"  # committed: gone for good
        await node.stop()

        node, egress = await started(tmp_path)
        assert await read_all(egress) == ["b", "c"]
        await node.stop()

    asyncio.run(scenario())


def test_concurrent_readers_get_different_records_in_order_and_new_ones_follow_a_restart(tmp_path):
    async def scenario():
        node, egress = await started(tmp_path)
        await emit(node, "1", "2", "3", "4")
        assert await asyncio.gather(read(egress), read(egress), read(egress)) == ["1", "2", "3"]
        await node.stop()

        node, egress = await started(tmp_path)
        await emit(node, "5", "6")  # numbered after the records already in the table
        assert await read_all(egress) == ["4", "5", "6"]
        assert egress_rows(node) == 0
        await node.stop()

    asyncio.run(scenario())


def test_a_topic_longer_than_memory_holds_is_read_from_disk_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(playground, "MAX_BUFFERED_RECORDS", 3)

    async def scenario():
        node, egress = await started(tmp_path)
        await emit(node, *"abcdefg")
        assert [await read(egress) for _ in range(4)] == list("abcd")
        await emit(node, *"hij")  # committed while the topic's tail is still only on disk
        assert await read_all(egress) == list("efghij")
        await emit(node, "k")
        assert await read_all(egress) == ["k"]
        await node.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("records", [0, 1])
def test_an_empty_topic_answers_404(tmp_path, records):
    async def scenario():
        node, egress = await started(tmp_path)
        await emit(node, *["x"] * records)
        assert await read_all(egress) == ["x"] * records
        assert await read(egress) is None
        await node.stop()

    asyncio.run(scenario())


def test_a_waiting_reader_is_answered_by_the_commit_that_makes_its_record(tmp_path):
    async def scenario():
        node, egress = await started(tmp_path)
        queued(node, "a")
        reader = asyncio.get_running_loop().create_task(read(egress, wait=5))
        await asyncio.sleep(0)
        commits = node.runtime.commits
        await node.commit()
        assert await asyncio.wait_for(reader, 5) == "a"
        # record and read committed together: no commit of its own for the read, nothing stored
        assert node.runtime.commits == commits + 1
        assert egress_rows(node) == 0
        await node.stop()

        node, egress = await started(tmp_path)
        assert await read(egress) is None  # read once: not there again after a restart
        await node.stop()

    asyncio.run(scenario())


def test_waiting_readers_take_a_closing_epochs_records_in_order_and_the_rest_wait_for_the_next(tmp_path):
    async def scenario():
        node, egress = await started(tmp_path)
        gone = asyncio.get_running_loop().create_task(read(egress, wait=0.01))
        assert await gone is None  # its wait ended: it takes nothing
        readers = [asyncio.get_running_loop().create_task(read(egress, wait=5)) for _ in range(2)]
        await asyncio.sleep(0)
        await emit(node, "a", "b", "c")
        assert await asyncio.gather(*readers) == ["a", "b"]
        assert egress_rows(node) == 1
        await emit(node, "d")
        assert await read_all(egress) == ["c", "d"]
        await node.stop()

    asyncio.run(scenario())


def test_a_crash_before_the_commit_that_would_answer_a_waiting_reader_loses_nothing(tmp_path):
    async def scenario():
        node, egress = await started(tmp_path)
        queued(node, "a")
        reader = asyncio.get_running_loop().create_task(read(egress, wait=5))
        await node.settle()  # it ran: its record is in the open epoch

        def failing(*args):
            raise sqlite3.OperationalError("disk I/O error")

        node.store._write = failing
        with pytest.raises(sqlite3.OperationalError):
            node.runtime.commit()  # the reader was given the record, but its epoch never committed
        await asyncio.sleep(0.05)
        assert not reader.done()
        reader.cancel()
        await node.crash()

        node, egress = await started(tmp_path)
        await node.commit()  # the message runs again
        assert await read_all(egress) == ["a"]
        await node.stop()

    asyncio.run(scenario())
