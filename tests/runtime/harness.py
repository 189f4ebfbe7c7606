"""An in-process runtime over a real SQLite data dir, with a clock the test moves."""

from __future__ import annotations

import asyncio
import typing
from pathlib import Path

from pystatefun import StatefulFunctions
from pystatefun.backends.embedded import SQLiteStore
from pystatefun.runtime.envelope import Envelope, address
from pystatefun.runtime.invokers import EmbeddedInvoker
from pystatefun.runtime.processor import Runtime
from pystatefun.sdk.types import Type
from pystatefun.sdk.messages import to_typed_value

PARTITIONS = 4


class Clock:
    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


class Node:
    """One runtime 'process': start it, feed it, crash it (drop it without committing) or stop it."""

    def __init__(self, data_dir: Path, functions: StatefulFunctions, clock: Clock, max_backlog: int | None = None,
                 spill: bool = True, commit_when_idle: bool = False):
        """``spill``: False keeps full mailboxes in memory, as on the Kafka backend; ``commit_when_idle``:
        commit as `pystatefun run` does when nothing runs (else only when a test asks)."""
        self.store = SQLiteStore(data_dir, PARTITIONS)
        self.invoker = EmbeddedInvoker(functions)
        self.runtime = Runtime(
            self.store, lambda t: self.invoker if t in functions else None, {}, PARTITIONS,
            # commits happen only where a test asks for them, so a crash can fall between them
            commit_interval=3600, commit_when_idle=commit_when_idle, clock=clock, max_backlog=max_backlog, spill=spill,
        )

    async def start(self) -> "Node":
        await self.runtime.start(self.store.recover())
        return self

    def send(self, typename: str, id: str, value, tpe: Type) -> None:
        self.runtime.route(Envelope(address(typename, id), None, to_typed_value(tpe, value)))

    async def settle(self) -> None:
        """Runs until nothing is ready or in flight."""
        for _ in range(1000):
            await asyncio.sleep(0)
            rt = self.runtime
            busy = rt._ready or rt._invocations or any(
                m.in_flight for p in rt.processors.values() for m in p.mailboxes.values()
            )
            if not busy:
                return
        raise AssertionError("the runtime did not settle")

    async def commit(self) -> None:
        await self.settle()
        self.runtime.commit()

    def wake_timers(self) -> None:
        self.runtime._timers_changed.set()

    async def crash(self) -> None:
        """Like kill -9: nothing after the last commit survives."""
        for task in self.runtime._tasks + list(self.runtime._invocations):
            task.cancel()
        await asyncio.gather(*self.runtime._tasks, *self.runtime._invocations, return_exceptions=True)
        self.store.close()

    async def stop(self) -> None:
        await self.runtime.stop()
        self.store.close()

    def state(self, typename: str, id: str, tpe: Type):
        values = self.store.load_state(typename, id)
        return {name: tpe.serializer().deserialize(v.value.value) for name, v in values.items()}


async def until(condition: typing.Callable[[], object], what: str) -> None:
    """Waits for ``condition`` (a liveness bound for a loaded machine, not a timing check)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within 10 s: {what}")
