"""Where the serving apps run a synchronous function: on the event loop, or in a thread.

On the loop, a slow synchronous call (one waiting on a database, say) holds every other request of the
server. In a thread, every call pays a hop that on a busy server is mostly waiting for the GIL, which
the loop hands over only every switch interval (5 ms): with a counter served to the runtime's chain
benchmark, every call in a thread ran 6,600-6,800 messages/s and 26,000-39,000 on hot addresses, against
13,600 and 62,000 on the loop (bench/runtime_chain.py, same machine, same hour).

So a function type runs on the loop until it has shown itself slow there: once two of its calls have
each held the loop for more than ``SLOW_CALL_SECONDS``, its calls run in a thread pool from then on, and
the log says so. Two, not one: on a busy machine a cheap call can be descheduled for that long once in a
while, and one such call must not cost a fast function its place on the loop. An async function always
runs on the loop (it should await, not block).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import time
import typing

from pystatefun.sdk.batch import Batch, BatchResult, Invocation

log = logging.getLogger("pystatefun.serving")

FUNCTION_THREADS = 16  # slow synchronous calls running at once; more wait for a thread, in arrival order
SLOW_CALL_SECONDS = 0.01  # a call on the loop longer than this holds every other request noticeably
SLOW_CALLS_TO_MOVE = 2  # slow calls on the loop after which a function type runs in threads


class SyncFunctionRunner:
    """Runs the batches of synchronous functions for one process's serving apps (see the module
    docstring). One event loop uses it: no locking."""

    def __init__(self, threads: int = FUNCTION_THREADS):
        # threads start on first use, so a process whose functions are all fast never starts one
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="pystatefun-function")
        self._slow_calls: dict[str, int] = {}  # per function type: its slow calls on the loop so far
        self.in_threads: set[str] = set()  # the function types that run in threads now

    async def run(self, batch: Batch, invocations: typing.Iterable[Invocation]) -> BatchResult:
        typename = batch.function.typename
        if typename in self.in_threads:
            # the caller's context variables (a framework's tracing context, say) reach the function in
            # the thread as they would on the loop, as asyncio.to_thread does
            run = contextvars.copy_context().run
            return await asyncio.get_running_loop().run_in_executor(self._pool, run, batch.run, invocations)
        return self.run_here(batch, invocations)

    def run_here(self, batch: Batch, invocations: typing.Iterable[Invocation]) -> BatchResult:
        """Runs the batch on the loop, now (for a function type not in ``in_threads``), timing it."""
        started = time.perf_counter()
        try:
            return batch.run(invocations)
        finally:
            took = time.perf_counter() - started
            if took > SLOW_CALL_SECONDS:
                self._slow(batch.function.typename, took)

    def _slow(self, typename: str, took: float) -> None:
        slow_calls = self._slow_calls[typename] = self._slow_calls.get(typename, 0) + 1
        if slow_calls >= SLOW_CALLS_TO_MOVE:
            self.in_threads.add(typename)
            log.warning("%s held the event loop for %.0f ms, every other request waiting (%d calls over %.0f ms "
                        "so far): its calls run in a thread from now on. Write it `async def` and await what it "
                        "waits for to keep it on the loop", typename, took * 1000, slow_calls,
                        SLOW_CALL_SECONDS * 1000)


# the runner of every serving app in this process (serving/http.py)
PROCESS_RUNNER = SyncFunctionRunner()
