"""Epoch commits in the committer thread: the loop goes on meanwhile, and a failed commit stops the runtime."""

import asyncio
import sqlite3
import threading

import pytest

from pystatefun import IntType

from .harness import Clock, Node
from .test_core import counter_functions


class GatedWrites:
    """Holds the committer thread inside the store's COMMIT until the test opens the gate."""

    def __init__(self, node: Node):
        self.entered = threading.Event()
        self.gate = threading.Event()
        commit = node.store._commit_and_unlock

        def gated(*args):
            self.entered.set()
            if not self.gate.wait(5):  # the loop blocked on the store instead of going on
                raise AssertionError("the gate was not opened: the event loop waited for the commit")
            commit(*args)

        node.store._commit_and_unlock = gated


def test_the_next_epoch_reads_state_of_the_epoch_still_committing(tmp_path):
    async def scenario():
        log = []
        node = await Node(tmp_path, counter_functions(log), Clock()).start()
        gate = GatedWrites(node)
        node.send("t/counter", "a", 1, IntType)
        await node.settle()
        committing = node.runtime.epoch
        task = asyncio.get_running_loop().create_task(node.runtime.commit_async())
        await asyncio.to_thread(gate.entered.wait, 10)
        # the commit is on its way to disk; processing goes on and sees its writes
        node.send("t/counter", "a", 10, IntType)
        await node.settle()
        assert log == [("a", 1), ("a", 10)]  # processed while the gate is still closed
        assert not committing.done.done()  # nothing is released before the commit is on disk
        gate.gate.set()
        await task
        assert committing.done.done()
        await node.commit()
        assert node.state("t/counter", "a", IntType) == {"count": 11}
        await node.stop()

    asyncio.run(scenario())


def test_a_failed_commit_stops_the_runtime_and_a_restart_processes_once(tmp_path):
    async def scenario():
        clock = Clock()
        node = await Node(tmp_path, counter_functions(), clock).start()
        node.send("t/counter", "a", 1, IntType)
        await node.commit()

        def failing(*args):
            raise sqlite3.OperationalError("disk I/O error")

        node.store._write = failing
        node.send("t/counter", "a", 10, IntType)
        await node.settle()
        node.runtime.request_commit()
        with pytest.raises(sqlite3.OperationalError):
            await asyncio.wait_for(node.runtime.failed, 5)
        await node.stop()  # stops without trying to commit again

        node = await Node(tmp_path, counter_functions(), clock).start()
        await node.commit()
        assert node.state("t/counter", "a", IntType) == {"count": 1}  # the message of the failed epoch was never accepted
        await node.stop()

    asyncio.run(scenario())
