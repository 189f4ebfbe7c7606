"""One bad client against pystatefun's HTTP server (issue 19): each attack is refused, the server's memory
stays under a stated ceiling (its peak RSS, read from /proc), and a well-behaved client probing it
meanwhile is answered within PROBE_CEILING_SECONDS. The server runs in a process of its own: the target
(http_target.py, with the limits a test sets, usually shorter timeouts) and, where the defaults matter,
a real ``pystatefun serve``. Every case is bounded in time and stays on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
import typing

import pytest

from adversarial.conftest import PROBE_CEILING_SECONDS, Target, read_response, while_probing

MiB = 1024 * 1024
Start = typing.Callable[..., Target]  # the http_target fixture


def run(scenario: typing.Coroutine[typing.Any, typing.Any, None]) -> None:
    asyncio.run(scenario)


async def connect(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", target.port), 10)


async def answer_or_end(reader: asyncio.StreamReader, seconds: float) -> int | None:
    """The status of the next answer on a connection, or None if the server closed it without one."""
    try:
        return (await asyncio.wait_for(read_response(reader), seconds))[0]
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def close_all(writers: typing.Iterable[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.transport.abort()
    await asyncio.sleep(0.1)


def test_a_header_line_without_end_is_refused_early_with_memory_flat(any_server: Target) -> None:
    """The issue's 144 MB header value was read whole; now the refusal comes after about 64 KiB."""
    growth_ceiling = 16 * MiB

    async def endless_header() -> tuple[bytes, int]:
        reader, writer = await connect(any_server)
        writer.write(b"POST /ns/t/1 HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        answer = asyncio.ensure_future(reader.read(4096))
        chunk, sent, deadline = b"a" * 65536, 0, time.monotonic() + 20
        with contextlib.suppress(ConnectionError):
            while not answer.done() and sent < 144 * MiB and time.monotonic() < deadline:
                writer.write(chunk)
                await writer.drain()
                # drain() returns without yielding while the socket takes everything (the server reads
                # on after its refusal, dropping what comes): yield, or the answer is never read
                await asyncio.sleep(0)
                sent += len(chunk)
        response = await asyncio.wait_for(answer, 5)
        writer.transport.abort()
        return response, sent

    async def scenario() -> None:
        baseline = any_server.rss()
        (response, sent), worst = await while_probing(any_server, endless_header())
        assert response.startswith(b"HTTP/1.1 431 "), response[:100]
        assert b"larger than 65536 bytes" in response
        assert sent < 144 * MiB  # refused long before the line could end
        assert any_server.peak_rss() - baseline < growth_ceiling
        assert worst < PROBE_CEILING_SECONDS

    run(scenario())


def test_connections_past_the_cap_are_refused_and_logged_and_the_server_recovers(http_target: Start) -> None:
    cap = 50
    target = http_target(max_connections=cap)

    async def scenario() -> None:
        silent = [await connect(target) for _ in range(cap)]
        await asyncio.sleep(0.2)
        for _ in range(20):
            reader, writer = await connect(target)
            started = time.monotonic()
            status, headers, body = await asyncio.wait_for(read_response(reader), PROBE_CEILING_SECONDS)
            assert status == 503 and headers["connection"] == "close" and b"limit of 50 open connections" in body
            assert time.monotonic() - started < PROBE_CEILING_SECONDS  # at once, not after a timeout
            writer.transport.abort()
        await close_all(w for _, w in silent)
        reader, writer = await connect(target)
        writer.write(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await answer_or_end(reader, PROBE_CEILING_SECONDS) == 202
        writer.transport.abort()
        log = target.output()
        assert "adversarial target on 127.0.0.1" in log and "refused" in log and "max_connections" in log
        assert log.count("WARNING") == 1  # twenty refusals within a few seconds: one line, not twenty

    run(scenario())


def test_a_real_function_server_refuses_connections_past_its_default_cap(function_server: Target) -> None:
    default_cap = 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < default_cap + 100:
        if hard < default_cap + 100:
            pytest.skip(f"this test opens {default_cap + 10} connections; the file limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (default_cap + 100, hard))

    async def scenario() -> None:
        silent = [await connect(function_server) for _ in range(default_cap)]
        await asyncio.sleep(0.3)
        refused = []
        for _ in range(5):
            reader, writer = await connect(function_server)
            refused.append(await answer_or_end(reader, PROBE_CEILING_SECONDS))
            writer.transport.abort()
        assert refused == [503] * 5
        await close_all(w for _, w in silent)
        (_, worst) = await while_probing(function_server, asyncio.sleep(0.5))
        assert worst < PROBE_CEILING_SECONDS
        assert "function endpoint on 127.0.0.1" in function_server.output()

    run(scenario())


def test_slowloris_heads_are_answered_408_after_the_header_timeout(http_target: Start) -> None:
    header_timeout = 1.0
    target = http_target(header_timeout=header_timeout)

    async def slowloris(connections: int) -> list[tuple[int | None, float]]:
        clients = [await connect(target) for _ in range(connections)]
        started = time.monotonic()
        for _, writer in clients:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(8):  # a header line every 0.25 s, for longer than the timeout
            await asyncio.sleep(0.25)
            for _, writer in clients:
                if not writer.is_closing():
                    with contextlib.suppress(ConnectionError):
                        writer.write(b"X-Slow: 1\r\n")
        outcomes = [(await answer_or_end(reader, 5), time.monotonic() - started) for reader, _ in clients]
        await close_all(w for _, w in clients)
        return outcomes

    async def scenario() -> None:
        outcomes, worst = await while_probing(target, slowloris(200))
        assert {status for status, _ in outcomes} == {408}
        assert max(seconds for _, seconds in outcomes) < header_timeout + PROBE_CEILING_SECONDS
        assert worst < PROBE_CEILING_SECONDS

    run(scenario())


def test_idle_and_silent_connections_are_closed_after_the_keep_alive_timeout(http_target: Start) -> None:
    keep_alive = 1.0
    target = http_target(keep_alive_timeout=keep_alive, max_connections=300)

    async def idle(connections: int) -> list[float]:
        clients = []
        for _ in range(connections // 2):  # one request each, then nothing
            reader, writer = await connect(target)
            writer.write(b"GET /once HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await answer_or_end(reader, 5) == 202
            clients.append((reader, writer))
        clients += [await connect(target) for _ in range(connections // 2)]  # never a byte
        started = time.monotonic()
        closed_after = []
        for reader, _ in clients:
            assert await asyncio.wait_for(reader.read(), keep_alive + 5) == b""
            closed_after.append(time.monotonic() - started)
        await close_all(w for _, w in clients)
        return closed_after

    async def scenario() -> None:
        closed_after, worst = await while_probing(target, idle(250))
        assert max(closed_after) < keep_alive + PROBE_CEILING_SECONDS
        assert worst < PROBE_CEILING_SECONDS

    run(scenario())


def test_a_client_that_pipelines_without_reading_does_not_grow_the_server(http_target: Start) -> None:
    """In the issue, 48 MB of pipelined requests took RSS from 53 to 392 MB."""
    growth_ceiling = 32 * MiB
    target = http_target()

    async def pipeline(total: int, seconds: float) -> int:
        reader, writer = await connect(target)
        requests = b"GET /p/p/p?answer=4096 HTTP/1.1\r\nHost: x\r\n\r\n" * 1000  # 4 MB of answers per write
        sent, deadline = 0, time.monotonic() + seconds
        with contextlib.suppress(ConnectionError):
            while sent < total and time.monotonic() < deadline:
                writer.write(requests)
                with contextlib.suppress(asyncio.TimeoutError):  # the server stopped reading: wait on
                    await asyncio.wait_for(writer.drain(), max(0.0, deadline - time.monotonic()))
                sent += len(requests)
        writer.transport.abort()
        return sent

    async def scenario() -> None:
        baseline = target.rss()
        sent, worst = await while_probing(target, pipeline(48 * MiB, 6.0))
        assert sent < 48 * MiB  # the server stopped reading: the client could not send it all
        assert target.peak_rss() - baseline < growth_ceiling
        assert worst < PROBE_CEILING_SECONDS

    run(scenario())


def test_many_large_bodies_at_once_are_held_to_the_body_budget(http_target: Start) -> None:
    """In the issue, 16 bodies of 32 MiB took RSS from 294 to 790 MB."""
    body, budget, clients = 8 * MiB, 32 * MiB, 16  # 128 MiB offered, 32 MiB allowed at once
    growth_ceiling = budget + 2 * body + 24 * MiB  # a body is joined from its chunks once: twice, briefly
    target = http_target(max_body_bytes=body, body_budget=budget)
    chunk = b"b" * MiB

    async def upload() -> tuple[int | None, dict[str, str]]:
        reader, writer = await connect(target)
        answer = asyncio.ensure_future(read_response(reader))
        writer.write(f"PUT /ns/t/1?sleep=2 HTTP/1.1\r\nHost: x\r\nContent-Length: {body}\r\n\r\n".encode())
        with contextlib.suppress(ConnectionError):
            for _ in range(body // len(chunk)):
                if answer.done():
                    break  # refused: the rest is not wanted
                writer.write(chunk)
                await writer.drain()
        try:
            status, headers, _ = await asyncio.wait_for(answer, 10)
        except (asyncio.IncompleteReadError, ConnectionError):
            status, headers = None, {}
        writer.transport.abort()
        return status, headers

    async def scenario() -> None:
        baseline = target.rss()
        answers, worst = await while_probing(target, asyncio.gather(*(upload() for _ in range(clients))))
        statuses = [status for status, _ in answers]
        assert statuses.count(202) >= 1 and statuses.count(503) >= clients - budget // body
        assert all(headers["retry-after"] == "1" for status, headers in answers if status == 503)
        assert set(statuses) <= {202, 503}
        assert target.peak_rss() - baseline < growth_ceiling
        assert worst < PROBE_CEILING_SECONDS

    run(scenario())


STRICT_CASES = [
    pytest.param(b"POST /ns/t/%ff HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"'%ff' is not UTF-8", id="invalid-utf8-id"),
    pytest.param(b"POST /ns/t/%c3 HTTP/1.1\r\nHost: x\r\n\r\n", 400, b"'%c3' is not UTF-8", id="truncated-utf8-id"),
    pytest.param(b"POST /ns/t/1 HTTP/1.1\r\n\r\n", 400, b"exactly one Host header; this one has 0", id="no-host"),
    pytest.param(b"POST /ns/t/1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, b"this one has 2", id="two-hosts"),
    pytest.param(b"POST /ns/t/1 HTTP/2.0\r\nHost: x\r\n\r\n", 505, b"HTTP/2.0 is not supported", id="http-2.0"),
    pytest.param(b"GET /ns/t/1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 400,
                 b"upgrades", id="upgrade"),
]


@pytest.mark.parametrize(("sent", "status", "reason"), STRICT_CASES)
def test_requests_outside_the_protocol_get_exactly_one_refusal(any_server: Target, sent: bytes, status: int,
                                                              reason: bytes) -> None:
    async def scenario() -> None:
        reader, writer = await connect(any_server)
        writer.write(sent + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")  # nothing after a refusal is read
        got, headers, body = await asyncio.wait_for(read_response(reader), PROBE_CEILING_SECONDS)
        rest = await asyncio.wait_for(reader.read(), PROBE_CEILING_SECONDS)  # until the server closes
        writer.transport.abort()
        assert (got, rest, headers["connection"]) == (status, b"", "close") and reason in body, (got, body, rest)

    run(scenario())
