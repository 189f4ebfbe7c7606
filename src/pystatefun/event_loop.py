"""Running a process's event loop: ``pystatefun run`` and ``pystatefun serve`` both use it, and the
function server must not import the runtime to do so."""

from __future__ import annotations

import asyncio
import signal
import typing

T = typing.TypeVar("T")


def run_event_loop(main: typing.Coroutine[typing.Any, typing.Any, T]) -> T:
    """Runs ``main`` on uvloop where it exists (Linux, macOS): the runtime's hot path is event-loop
    bound, and uvloop's loop (libuv, Cython) costs less per callback and per socket than asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def stop_signal() -> asyncio.Event:
    """An event set when the process gets SIGINT or SIGTERM (call it inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
