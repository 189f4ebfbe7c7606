"""Where the serving path runs a synchronous function: on the event loop while it is fast there, in the
serving thread pool (with the caller's context variables) once it has held the loop SLOW_CALLS_TO_MOVE
times; async functions on the loop; RequestReplyHandler.handle_async alone keeps the official SDK's
behaviour of running both on the loop."""

import asyncio
import contextvars
import logging
import threading
import time

from pystatefun import IntType, StatefulFunctions
from pystatefun.serving import RequestReplyHandler
from pystatefun.serving.threads import SLOW_CALL_SECONDS, SLOW_CALLS_TO_MOVE, SyncFunctionRunner
from pystatefun.wire.request_reply_pb2 import FromFunction

from support.protocol import request, typed

tenant = contextvars.ContextVar("tenant", default="unset")
seen: dict[str, list[tuple[str, str]]] = {}

functions = StatefulFunctions()


@functions.bind("test/sync")
def sync_function(context, message):
    seen.setdefault("sync", []).append((threading.current_thread().name, tenant.get()))
    time.sleep(message.as_int() / 1000)  # blocking, for the message's milliseconds


@functions.bind("test/async")
async def async_function(context, message):
    seen.setdefault("async", []).append((threading.current_thread().name, tenant.get()))


def call(typename: str, sleep_ms: int, runner: SyncFunctionRunner | None) -> None:
    async def scenario() -> None:
        tenant.set("acme")  # what a framework's middleware might set for the request
        reply = await RequestReplyHandler(functions).handle_async(
            request(typename, "1", [typed(IntType, sleep_ms)]), sync_runner=runner)
        FromFunction.FromString(reply)

    asyncio.run(scenario())


MAIN = threading.main_thread().name
SLOW_MS = int(SLOW_CALL_SECONDS * 1000) * 3


def test_a_fast_sync_function_runs_on_the_loop_and_a_slow_one_moves_to_a_thread(caplog):
    seen.clear()
    runner = SyncFunctionRunner()
    for _ in range(5):
        call("test/sync", 0, runner)
    assert seen["sync"] == [(MAIN, "acme")] * 5 and "test/sync" not in runner.in_threads

    with caplog.at_level(logging.WARNING, logger="pystatefun.serving"):
        for _ in range(SLOW_CALLS_TO_MOVE):  # each holds the loop: still there, until the last one
            call("test/sync", SLOW_MS, runner)
    assert seen["sync"][5:] == [(MAIN, "acme")] * SLOW_CALLS_TO_MOVE
    assert runner.in_threads == {"test/sync"}
    assert "test/sync held the event loop" in caplog.text and "run in a thread from now on" in caplog.text

    call("test/sync", 0, runner)  # from now on in a thread, with the caller's context variables
    thread, value = seen["sync"][-1]
    assert thread.startswith("pystatefun-function") and value == "acme"


def test_one_slow_call_does_not_move_a_function():
    """A cheap call descheduled for a moment on a busy machine must not cost it its place on the loop."""
    runner = SyncFunctionRunner()
    call("test/sync", SLOW_MS, runner)
    for _ in range(3):
        call("test/sync", 0, runner)
    assert runner.in_threads == set()


def test_async_functions_run_on_the_loop():
    seen.clear()
    call("test/async", 0, SyncFunctionRunner())
    assert seen["async"] == [(MAIN, "acme")]


def test_handle_async_alone_runs_sync_functions_on_the_loop_as_the_official_sdk_does():
    seen.clear()
    for _ in range(SLOW_CALLS_TO_MOVE + 1):
        call("test/sync", SLOW_MS, None)
    assert seen["sync"] == [(MAIN, "acme")] * (SLOW_CALLS_TO_MOVE + 1)
