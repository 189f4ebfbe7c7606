"""Running a process's event loop: ``pystatefun run`` and ``pystatefun serve`` both use it, and the
function server must not import the runtime to do so."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import signal
import sys
import threading
import typing

T = typing.TypeVar("T")

# How many more container objects the process may allocate than it frees before its youngest generation
# is collected (CPython's default is 700). A busy runtime keeps many objects alive for a short while
# (messages in mailboxes, open epochs, waiting requests): at 700 the young collections ran about 40
# times a second in the keyed-counter bench, each moving such objects into the older generations, which
# grew into full collections of the whole heap.
YOUNG_GENERATION_THRESHOLD = 50_000

# Open files the process wants: its listeners' connection caps (1,024 for each HTTP server, 128 for the
# admin API), the remote-call pool and the store, with room to spare. Below it, descriptors can run out
# before a cap refuses anyone, and then every listener, the admin API's too, stops accepting.
WANTED_OPEN_FILES = 8192

# Python's switch interval while a helper thread waits in the Kafka client (see prompt_handover); the
# default is 5 ms
HANDOVER_SWITCH_SECONDS = 0.0001

log = logging.getLogger("pystatefun")


def run_event_loop(main: typing.Coroutine[typing.Any, typing.Any, T]) -> T:
    """Runs ``main`` on uvloop where it exists (Linux, macOS): the runtime's hot path is event-loop
    bound, and uvloop's loop (libuv, Cython) costs less per callback and per socket than asyncio's own.
    The garbage collector is settled first (see ``settle_garbage_collector``), and the open-file limit
    raised (see ``raise_open_file_limit``)."""
    settle_garbage_collector()
    raise_open_file_limit()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def settle_garbage_collector() -> None:
    """Keeps full garbage collections from stalling the process once it serves.

    Everything loaded so far (modules, the configuration, the functions) lives as long as the process,
    so it is frozen: later collections never scan it again. Without that, each full collection scanned
    the whole heap while every request waited: the keyed-counter bench's p99 was 75-99 ms with them and
    20-24 ms without (p50 unchanged). The youngest generation is collected less often, for the same
    reason (``YOUNG_GENERATION_THRESHOLD``); the older generations keep CPython's settings.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


def raise_open_file_limit() -> int:
    """Raises the soft limit of open files to the hard one (as Go's runtime does for every program), and
    says so in the log when even that is below ``WANTED_OPEN_FILES``. Many systems start processes with a
    soft limit of 1,024, which a thousand idle connections exhaust; the hard limit is usually far higher.
    Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = max(soft, WANTED_OPEN_FILES) if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, wanted, e)
    if soft < WANTED_OPEN_FILES:
        log.warning("only %d open files are allowed (ulimit -n): connections may run out of descriptors "
                    "before the listeners' caps refuse them; allow %d or more", soft, WANTED_OPEN_FILES)
    return soft


_handovers = 0  # threads inside prompt_handover: the first one lowers the interval, the last one restores it
_handovers_lock = threading.Lock()
_interval_before = 0.0


@contextlib.contextmanager
def prompt_handover() -> typing.Iterator[None]:
    """Lowers Python's switch interval while a helper thread (an epoch's committer, a Kafka egress) waits
    in librdkafka's client, and restores it when the last such thread is done.

    The client gives the GIL back while it waits and takes it again for every delivery report it hands to
    a Python callback; each time, the thread then waits until the busy event loop lets go of the GIL, up
    to the switch interval (5 ms). A Kafka-backend epoch of a hundred messages in flight waited 0.3-1.0 s
    in its flush that way, and every acknowledgement waited for that epoch
    (tests/adversarial/test_internal_load.py); with 0.1 ms the flushes took 56-72 ms on average. The
    loop is interrupted only when the waiting thread asks for the GIL, a few microseconds each time."""
    global _handovers, _interval_before
    with _handovers_lock:
        if _handovers == 0:
            _interval_before = sys.getswitchinterval()
            sys.setswitchinterval(HANDOVER_SWITCH_SECONDS)
        _handovers += 1
    try:
        yield
    finally:
        with _handovers_lock:
            _handovers -= 1
            if _handovers == 0:
                sys.setswitchinterval(_interval_before)


def stop_signal() -> asyncio.Event:
    """An event set when the process gets SIGINT or SIGTERM (call it inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
