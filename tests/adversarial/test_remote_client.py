"""The remote-call client (runtime/transport.py) against a hostile function server the test starts on
127.0.0.1: an endless header line, a huge status line, bytes trickling in, a body over payload_max_bytes,
no answer at all. Each case asserts the clear failure, that it came within the call budget, that memory
stayed bounded (what the hostile server managed to write before the client closed, and the test
process's peak RSS), and that calls to a second, well-behaved endpoint kept completing meanwhile.
"""

from __future__ import annotations

import asyncio
import time
import typing
from datetime import timedelta
from pathlib import Path

import pytest

from pystatefun.runtime.transport import (
    MAX_RESPONSE_HEAD_BYTES,
    HttpTransport,
    RemoteCallError,
    RetryPolicy,
    TransportSettings,
)
from transport.servers import HOSTILE_CAP_BYTES, Answer, reply, serve, serve_hostile

BUDGET = 3.0  # the hostile call's budget, seconds
SLACK = 1.5  # seconds a failing call may overrun its budget on a noisy machine
GOOD_CEILING = 2.0  # seconds a well-behaved endpoint's call may take meanwhile (1 s asked; the machine is noisy)
PAYLOAD_MAX = 1024 * 1024
# what the hostile server may write before the client closes: what the client may read (a head bound and
# one socket read past it, or a body bound) plus socket buffers on both sides of a loopback connection
KERNEL_BUFFERS = 4 * 1024 * 1024
RSS_CEILING = 64 * 1024 * 1024  # peak RSS growth of the test process (128 MB of one header took 500 MB before)
CHUNK = b"a" * 65536
OCTET_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"


def endless_header() -> typing.Iterator[bytes | float]:
    yield OCTET_HEAD + b"X-Endless: "
    while True:
        yield CHUNK


def huge_status_line() -> typing.Iterator[bytes | float]:
    yield b"HTTP/1.1 200 "
    while True:
        yield CHUNK


def many_headers() -> typing.Iterator[bytes | float]:
    yield OCTET_HEAD
    for i in range(10**7):
        yield b"X-Header-%d: %s\r\n" % (i, b"v" * 100)


def trickled_head() -> typing.Iterator[bytes | float]:
    yield b"HTTP/1.1 200 OK\r\n"
    while True:
        yield b"X"
        yield 0.05


def trickled_body() -> typing.Iterator[bytes | float]:
    yield OCTET_HEAD + b"Content-Length: 100000\r\n\r\n"
    while True:
        yield b"x"
        yield 0.05


def huge_content_length() -> typing.Iterator[bytes | float]:
    yield OCTET_HEAD + b"Content-Length: %d\r\n\r\n" % (1 << 40)
    while True:
        yield CHUNK


def endless_chunked_body() -> typing.Iterator[bytes | float]:
    yield OCTET_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    while True:
        yield b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)


def endless_tiny_chunks() -> typing.Iterator[bytes | float]:
    """Framing without body: a chunk extension per byte of body, which httptools reads without end."""
    yield OCTET_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    while True:
        yield b"1;" + b"e" * 1000 + b"\r\nx\r\n"


def endless_trailer() -> typing.Iterator[bytes | float]:
    yield OCTET_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: "
    while True:
        yield CHUNK


def never_answers() -> typing.Iterator[bytes | float]:
    yield 60.0  # longer than any budget here; the server's own cap ends it if the client never gives up


class Case(typing.NamedTuple):
    answer: Answer
    says: str  # in the error message
    retryable: bool
    fails_fast: bool  # within SLACK, not after the budget


CASES = {
    "endless header line": Case(endless_header, "status line and headers of the response passed", False, True),
    "huge status line": Case(huge_status_line, "status line and headers of the response passed", False, True),
    "endless list of headers": Case(many_headers, "status line and headers of the response passed", False, True),
    "trickled head": Case(trickled_head, "call budget", True, False),
    "trickled body": Case(trickled_body, "call budget", True, False),
    "huge Content-Length": Case(huge_content_length, "payload_max_bytes", False, True),
    "endless chunked body": Case(endless_chunked_body, "payload_max_bytes", False, True),
    "endless chunk extensions": Case(endless_tiny_chunks, "chunk framing and trailers passed", False, True),
    "endless trailer": Case(endless_trailer, "chunk framing and trailers passed", False, True),
    "never answers": Case(never_answers, "call budget", True, False),
}


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # uvloop: what `pystatefun run` runs on
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_hostile_function_server_fails_the_call_clearly_in_bounded_memory_and_stalls_no_other_endpoint(
    case: Case, loop: str
) -> None:
    loop_factory = pytest.importorskip("uvloop").new_event_loop if loop == "uvloop" else None
    settings = TransportSettings(
        call=timedelta(seconds=BUDGET),
        connect=timedelta(seconds=1),
        read=timedelta(seconds=1),  # the trickles send a byte every 50 ms: each resets this, not the budget
        payload_max_bytes=PAYLOAD_MAX,
        retry=RetryPolicy(),
    )
    peak = PeakRss()

    async def scenario() -> None:
        async with serve(reply(b"ok")) as good:
            with serve_hostile(case.answer) as hostile:
                stop = asyncio.Event()
                good_calls = asyncio.create_task(keep_calling(good.url(), stop))
                await asyncio.sleep(0.1)  # the good endpoint is being called before the hostile call starts
                transport = HttpTransport(settings)
                started = time.monotonic()
                try:
                    with pytest.raises(RemoteCallError) as info:
                        await transport.call(hostile.url(), b"request")
                finally:
                    await transport.close()
                elapsed = time.monotonic() - started
                await asyncio.sleep(0.3)  # and still afterwards
                stop.set()
                latencies = await good_calls
                await wait_for(lambda: hostile.closed_by_client >= hostile.connections, seconds=5)

                error = info.value
                assert case.says in str(error), str(error)
                assert error.retryable is case.retryable
                assert elapsed < (SLACK if case.fails_fast else BUDGET + SLACK), (elapsed, str(error))
                if not case.retryable:
                    assert error.attempts == 1 and hostile.connections == 1
                # the client closed every connection it opened: nothing of the hostile server stays pooled
                assert hostile.closed_by_client == hostile.connections
                assert hostile.written < MAX_RESPONSE_HEAD_BYTES + PAYLOAD_MAX + KERNEL_BUFFERS
                assert hostile.written < HOSTILE_CAP_BYTES  # the client gave up, not the server
                assert len(latencies) >= 3 and max(latencies) < GOOD_CEILING, latencies

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(scenario())
    peak.check(RSS_CEILING)


async def keep_calling(url: str, stop: asyncio.Event) -> list[float]:
    """Calls a well-behaved endpoint one call after another until ``stop``: each call's seconds."""
    transport = HttpTransport(TransportSettings(call=timedelta(seconds=10)))
    latencies: list[float] = []
    try:
        for _ in range(10_000):  # bounded: about 20 s at the pace below, more than any case takes
            if stop.is_set():
                break
            started = time.monotonic()
            assert await transport.call(url, b"request") == b"ok"
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.002)
    finally:
        await transport.close()
    return latencies


async def wait_for(condition: typing.Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


class PeakRss:
    """The growth of this process's peak resident set size over a test: Linux can reset the peak
    (``/proc/self/clear_refs``), so the peak reached before the test does not hide a growth within it."""

    def __init__(self) -> None:
        self.available = _reset_peak()
        self.start = _status_kib("VmRSS") if self.available else 0

    def check(self, ceiling: int) -> None:
        if not self.available:
            return  # not Linux, or not allowed: the bytes-written bound above still holds
        growth = (_status_kib("VmHWM") - self.start) * 1024
        assert growth < ceiling, f"peak RSS grew by {growth / 2**20:.1f} MiB"


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)
