"""HttpTransport against real servers: what goes on the wire, what is retried, what fails fast."""

from __future__ import annotations

import asyncio
import time
import typing
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web

from pystatefun.runtime.transport import (
    MAX_RESPONSE_HEAD_BYTES,
    HttpTransport,
    RemoteCallError,
    RetryPolicy,
    TransportSettings,
)

from .conftest import CLIENT_KEY_PASSWORD, Certs
from .servers import OCTET, echo, failing_first, refused_port, reply, serve, serve_raw, slow_first

SLACK = 1.0  # seconds a failing call may overrun its budget: generous, the behaviour is what is tested


def settings(call: float = 5.0, **kwargs: typing.Any) -> TransportSettings:
    kwargs.setdefault("connect", timedelta(seconds=1))
    return TransportSettings(call=timedelta(seconds=call), **kwargs)


def run(scenario: typing.Awaitable[None]) -> None:
    asyncio.run(scenario)  # type: ignore[arg-type]


async def call(transport_settings: TransportSettings, url: str, body: bytes = b"req", **kwargs: typing.Any) -> bytes:
    transport = HttpTransport(transport_settings, **kwargs)
    try:
        return await transport.call(url, body)
    finally:
        await transport.close()


async def failing_call(transport_settings: TransportSettings, url: str, body: bytes = b"req") -> tuple[RemoteCallError, float]:
    started = time.monotonic()
    with pytest.raises(RemoteCallError) as info:
        await call(transport_settings, url, body)
    return info.value, time.monotonic() - started


def test_success_posts_the_statefun_request_and_returns_the_body() -> None:
    async def scenario() -> None:
        async with serve(echo()) as server:
            assert await call(settings(), server.url("/statefun/greeter?x=1"), b"\x0a\x01hello") == b"re:\x0a\x01hello"
            [seen] = server.requests
            assert seen.path == "/statefun/greeter?x=1"
            assert seen.body == b"\x0a\x01hello"
            assert seen.headers["Content-Type"] == OCTET
            assert seen.headers["Accept"] == OCTET
            assert seen.headers["User-Agent"] == "statefun"

    run(scenario())


def test_an_empty_200_body_is_a_valid_reply() -> None:
    async def scenario() -> None:
        async with serve(reply(b"")) as server:
            assert await call(settings(), server.url()) == b""

    run(scenario())


def test_content_type_parameters_are_ignored() -> None:
    async def scenario() -> None:
        async with serve(reply(b"x", content_type="Application/Octet-Stream; charset=binary")) as server:
            assert await call(settings(), server.url()) == b"x"

    run(scenario())


def test_500s_are_retried_until_success_and_every_attempt_is_reported() -> None:
    attempts: list[bool] = []

    async def scenario() -> None:
        async with serve(failing_first(2, 500, b"done")) as server:
            result = await call(settings(), server.url(), on_attempt=lambda latency, ok: attempts.append(ok))
            assert result == b"done"
            assert len(server.requests) == 3

    run(scenario())
    assert attempts == [False, False, True]


def test_429_is_retried() -> None:
    async def scenario() -> None:
        async with serve(failing_first(1, 429)) as server:
            assert await call(settings(), server.url()) == b"ok"
            assert len(server.requests) == 2

    run(scenario())


def test_503_until_the_budget_is_spent_fails_retryable_within_the_budget() -> None:
    async def scenario() -> None:
        async with serve(reply(b"overloaded", status=503, content_type="text/plain")) as server:
            error, elapsed = await failing_call(settings(call=0.5), server.url())
            assert error.retryable
            assert error.status == 503
            assert error.attempts == len(server.requests) > 1
            assert error.body == "overloaded"
            assert "overloaded" in str(error) and "budget" in str(error)
            assert elapsed <= 0.5 + SLACK

    run(scenario())


def test_400_fails_fast_after_one_attempt_with_the_body_in_the_message() -> None:
    async def scenario() -> None:
        async with serve(reply(b"unknown function type com.example/nope", status=400, content_type="text/plain")) as server:
            error, _ = await failing_call(settings(), server.url())
            assert not error.retryable
            assert error.status == 400
            assert error.attempts == len(server.requests) == 1
            assert "unknown function type com.example/nope" in str(error)
            assert error.body == "unknown function type com.example/nope"

    run(scenario())


def test_a_long_error_body_is_cut_to_2_kb() -> None:
    async def scenario() -> None:
        async with serve(reply(b"e" * 10_000, status=404, content_type="text/plain")) as server:
            error, _ = await failing_call(settings(), server.url())
            assert error.body == "e" * 2048

    run(scenario())


def test_a_2xx_with_another_content_type_is_a_protocol_error_not_retried() -> None:
    async def scenario() -> None:
        async with serve(reply(b"<html>login</html>", content_type="text/html")) as server:
            error, _ = await failing_call(settings(), server.url())
            assert not error.retryable
            assert error.status == 200
            assert len(server.requests) == 1
            assert "Content-Type 'text/html'" in str(error) and OCTET in str(error)
            assert "login" in error.body

    run(scenario())


def test_a_redirect_is_not_followed() -> None:
    async def handler(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": "/elsewhere"})

    async def scenario() -> None:
        async with serve(handler) as server:
            error, _ = await failing_call(settings(), server.url())
            assert not error.retryable and error.status == 307
            assert "/elsewhere" in str(error)
            assert len(server.requests) == 1

    run(scenario())


def test_a_read_timeout_is_retried_and_a_later_attempt_succeeds() -> None:
    attempts: list[bool] = []

    async def scenario() -> None:
        async with serve(slow_first(3.0, b"fast")) as server:
            transport_settings = settings(call=10, read=timedelta(milliseconds=200))
            result = await call(transport_settings, server.url(), on_attempt=lambda latency, ok: attempts.append(ok))
            assert result == b"fast"
            assert len(server.requests) == 2

    run(scenario())
    assert attempts == [False, True]


def test_without_a_read_timeout_an_attempt_may_use_the_whole_budget() -> None:
    async def scenario() -> None:
        async with serve(slow_first(3.0)) as server:
            error, elapsed = await failing_call(settings(call=0.5), server.url())
            assert error.retryable and error.status is None
            assert error.attempts == len(server.requests) == 1
            assert "budget" in str(error)
            assert elapsed <= 0.5 + SLACK

    run(scenario())


def test_a_refused_connection_is_retried_until_the_budget_is_spent() -> None:
    async def scenario() -> None:
        sock, port = refused_port()
        with sock:
            error, elapsed = await failing_call(settings(call=0.5), f"http://127.0.0.1:{port}/statefun")
        assert error.retryable and error.status is None
        assert error.attempts > 1
        assert isinstance(error.cause, ConnectionRefusedError)
        assert elapsed <= 0.5 + SLACK

    run(scenario())


def test_max_attempts_is_honoured() -> None:
    async def scenario() -> None:
        async with serve(reply(b"boom", status=503, content_type="text/plain")) as server:
            error, _ = await failing_call(settings(retry=RetryPolicy(max_attempts=3)), server.url())
            assert error.retryable and error.status == 503
            assert error.attempts == len(server.requests) == 3
            assert "max_attempts" in str(error)

    run(scenario())


def test_retryable_status_is_configurable() -> None:
    async def scenario() -> None:
        async with serve(failing_first(1, 409)) as server:
            assert await call(settings(retry=RetryPolicy(retryable_status=frozenset({409}))), server.url()) == b"ok"
        async with serve(failing_first(1, 503)) as server:
            error, _ = await failing_call(settings(retry=RetryPolicy(retryable_status=frozenset({409}))), server.url())
            assert not error.retryable and len(server.requests) == 1

    run(scenario())


def test_a_request_over_payload_max_bytes_is_refused_before_sending() -> None:
    async def scenario() -> None:
        async with serve(echo()) as server:
            error, _ = await failing_call(settings(payload_max_bytes=103), server.url(), b"x" * 104)
            assert not error.retryable and error.attempts == 0
            assert "payload_max_bytes" in str(error)
            assert server.requests == []
            assert await call(settings(payload_max_bytes=103), server.url(), b"x" * 100) == b"re:" + b"x" * 100

    run(scenario())


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_response_over_payload_max_bytes_is_not_retried(chunked: bool) -> None:
    async def handler(request: web.Request, n: int) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=b"y" * 5000, content_type=OCTET)
        response = web.StreamResponse(headers={"Content-Type": OCTET})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(5):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response

    async def scenario() -> None:
        async with serve(handler) as server:
            error, _ = await failing_call(settings(payload_max_bytes=4096), server.url())
            assert not error.retryable and error.status == 200
            assert "payload_max_bytes" in str(error)
            assert len(server.requests) == 1
            assert len(await call(settings(payload_max_bytes=5000), server.url())) == 5000

    run(scenario())


def test_a_response_head_just_under_the_bound_is_read_with_a_large_body_in_the_same_reads() -> None:
    """The bound counts the head alone: a head just under MAX_RESPONSE_HEAD_BYTES arriving together with a
    body many times its size is a valid response, and the connection stays pooled."""
    body = b"z" * (4 * MAX_RESPONSE_HEAD_BYTES)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n" % len(body)
    filler = b"X-Filler: " + b"f" * (MAX_RESPONSE_HEAD_BYTES - len(head) - 100) + b"\r\n"
    answer = head + filler + b"\r\n" + body
    assert MAX_RESPONSE_HEAD_BYTES - 100 < len(answer) - len(body) <= MAX_RESPONSE_HEAD_BYTES

    async def scenario() -> None:
        async with serve_raw(answer) as server:
            transport = HttpTransport(settings())
            try:
                for _ in range(2):
                    assert await transport.call(server.url(), b"") == body
            finally:
                await transport.close()
            assert server.connections == 1

    run(scenario())


@pytest.mark.parametrize("over", [False, True], ids=["at the bound", "one byte over"])
def test_a_response_head_over_the_bound_fails_at_once_and_is_not_retried(over: bool) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 2\r\n"
    filler = b"X-Filler: " + b"f" * (MAX_RESPONSE_HEAD_BYTES - len(head) - 14 + over) + b"\r\n"
    answer = head + filler + b"\r\nok"
    assert len(answer) - 2 == MAX_RESPONSE_HEAD_BYTES + over

    async def scenario() -> None:
        async with serve_raw(answer) as server:
            if not over:
                assert await call(settings(), server.url()) == b"ok"
                return
            error, elapsed = await failing_call(settings(), server.url())
            assert not error.retryable and error.attempts == 1 and server.requests == 1
            assert f"the status line and headers of the response passed {MAX_RESPONSE_HEAD_BYTES} bytes" in str(error)
            assert "misbehaving" in str(error)
            assert elapsed < SLACK

    run(scenario())


def test_a_body_in_small_chunks_is_not_taken_for_oversized_framing() -> None:
    """Chunk framing may be as large as the body again: 1 MiB in 100-byte chunks (about 6% framing) is read."""

    async def handler(request: web.Request, n: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": OCTET})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(10_486):
            await response.write(b"c" * 100)
        await response.write_eof()
        return response

    async def scenario() -> None:
        async with serve(handler) as server:
            assert await call(settings(), server.url()) == b"c" * 1_048_600

    run(scenario())


def test_http_unix_round_trip(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serve(echo(), unix=tmp_path / "functions.sock") as server:
            url = f"http+unix://{tmp_path}/functions.sock/statefun/greeter"
            assert await call(settings(), url, b"hi") == b"re:hi"
            assert server.requests[0].path == "/statefun/greeter"
            assert server.requests[0].headers["Host"] == "localhost"

    run(scenario())


def test_connections_are_reused_across_sequential_calls() -> None:
    async def scenario() -> None:
        async with serve(echo()) as server:
            transport = HttpTransport(settings())
            try:
                for i in range(5):
                    assert await transport.call(server.url(), b"%d" % i) == b"re:%d" % i
            finally:
                await transport.close()
            assert len(server.requests) == 5
            assert len(server.connections) == 1

    run(scenario())


def test_retried_error_responses_do_not_cost_a_connection() -> None:
    async def scenario() -> None:
        async with serve(failing_first(3, 503)) as server:
            assert await call(settings(), server.url()) == b"ok"
            assert len(server.connections) == 1

    run(scenario())


def test_pool_ttl_zero_disables_connection_reuse() -> None:
    async def scenario() -> None:
        async with serve(echo()) as server:
            transport = HttpTransport(settings(pool_ttl=timedelta(0)))
            try:
                for _ in range(3):
                    await transport.call(server.url(), b"")
            finally:
                await transport.close()
            assert len(server.connections) == 3

    run(scenario())


def test_https_trusts_only_trust_cacerts(certs: Certs) -> None:
    async def scenario() -> None:
        async with serve(echo(), ssl_context=certs.server_context()) as server:
            assert await call(settings(trust_cacerts=certs.ca), server.url(), b"tls") == b"re:tls"
            # the system trust store does not know the test CA: a deterministic failure, not retried
            error, _ = await failing_call(settings(), server.url())
            assert not error.retryable and error.attempts == 1
            assert "trust_cacerts" in str(error)

    run(scenario())


def test_mtls_with_an_encrypted_client_key(certs: Certs) -> None:
    async def scenario() -> None:
        async with serve(echo(), ssl_context=certs.server_context(require_client_cert=True)) as server:
            mtls = settings(
                trust_cacerts=certs.ca, client_cert=certs.client_cert, client_key=certs.client_key,
                client_key_password=CLIENT_KEY_PASSWORD,
            )
            assert await call(mtls, server.url(), b"mtls") == b"re:mtls"
            assert len(server.requests) == 1
            error, elapsed = await failing_call(settings(call=0.5, trust_cacerts=certs.ca), server.url())
            assert error.status is None
            assert len(server.requests) == 1  # the server never saw a request without a client certificate
            assert elapsed <= 0.5 + SLACK

    run(scenario())


def test_https_unix_round_trip(certs: Certs, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serve(echo(), unix=tmp_path / "fn.sock", ssl_context=certs.server_context()) as server:
            url = f"https+unix://{tmp_path}/fn.sock/statefun"
            assert await call(settings(trust_cacerts=certs.ca), url, b"uds") == b"re:uds"
            assert server.requests[0].path == "/statefun"

    run(scenario())


def test_a_wrong_client_key_password_is_a_settings_error(certs: Certs) -> None:
    with pytest.raises(ValueError, match="client_key_password"):
        HttpTransport(settings(client_cert=certs.client_cert, client_key=certs.client_key, client_key_password="nope"))


def test_a_closed_transport_refuses_calls() -> None:
    async def scenario() -> None:
        transport = HttpTransport(settings())
        await transport.close()
        with pytest.raises(RuntimeError, match="closed"):
            await transport.call("http://127.0.0.1:1/statefun", b"")

    run(scenario())


def test_a_pooled_connection_the_server_closed_is_replaced_without_a_retry() -> None:
    """The keep-alive race: the server closes an idle connection; the next call must not fail or count
    a failed attempt, it goes out on a new connection."""
    attempts: list[bool] = []

    async def scenario() -> None:
        async with serve(echo()) as server:
            transport = HttpTransport(settings(), on_attempt=lambda latency, ok: attempts.append(ok))
            try:
                assert await transport.call(server.url(), b"1") == b"re:1"
                for connection in server.connections:
                    connection.close()  # the server drops the idle keep-alive connection
                await asyncio.sleep(0.05)
                assert await transport.call(server.url(), b"2") == b"re:2"
            finally:
                await transport.close()
            assert len(server.connections) == 2

    run(scenario())
    assert attempts == [True, True]


def test_chunked_responses_are_read_whole() -> None:
    async def handler(request: web.Request, n: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": OCTET})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one,", b"two,", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    async def scenario() -> None:
        async with serve(handler) as server:
            transport = HttpTransport(settings())
            try:
                for _ in range(2):  # the connection stays usable after a chunked body
                    assert await transport.call(server.url(), b"") == b"one,two,three"
            finally:
                await transport.close()
            assert len(server.connections) == 1

    run(scenario())


def test_pool_size_bounds_the_connections_and_the_rest_wait() -> None:
    in_flight = 0
    most = 0

    async def handler(request: web.Request, n: int) -> web.StreamResponse:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.Response(body=b"ok", content_type=OCTET)

    async def scenario() -> None:
        async with serve(handler) as server:
            transport = HttpTransport(settings(pool_size=3))
            try:
                results = await asyncio.gather(*(transport.call(server.url(), b"") for _ in range(12)))
            finally:
                await transport.close()
            assert results == [b"ok"] * 12
            assert len(server.connections) == 3

    run(scenario())
    assert most == 3


def test_a_body_delimited_by_closing_the_connection_is_read_whole() -> None:
    """HTTP/1.0, or a response without a length: the body ends when the server closes the connection."""
    answer = b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\nuntil the end"

    async def scenario() -> None:
        async with serve_raw(answer, close=True) as server:
            transport = HttpTransport(settings())
            try:
                for _ in range(2):  # each on its own connection: this one cannot be reused
                    assert await transport.call(server.url(), b"") == b"until the end"
            finally:
                await transport.close()
            assert server.requests == 2 and server.connections == 2

    run(scenario())


def test_an_interim_1xx_response_is_skipped() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\nfinal"
    )

    async def scenario() -> None:
        async with serve_raw(answer) as server:
            transport = HttpTransport(settings())
            try:
                for _ in range(2):
                    assert await transport.call(server.url(), b"") == b"final"
            finally:
                await transport.close()
            assert server.connections == 1

    run(scenario())


def test_an_unrequested_content_encoding_is_refused() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: 4\r\n\r\n\x1f\x8b\x08\x00"
    )

    async def scenario() -> None:
        async with serve_raw(answer) as server:
            error, _ = await failing_call(settings(), server.url())
            assert not error.retryable and error.attempts == 1 and error.status == 200
            assert "Content-Encoding 'gzip'" in str(error)

    run(scenario())


def test_closing_the_transport_closes_the_connections_of_calls_still_running() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 2\r\n\r\nok"

    async def scenario() -> None:
        hold = asyncio.Event()
        async with serve_raw(answer, hold=hold) as server:
            transport = HttpTransport(settings())
            running = asyncio.create_task(transport.call(server.url(), b""))
            await server.received.wait()
            await transport.close()
            hold.set()
            assert await running == b"ok"  # the call in flight completes ...
            await asyncio.wait_for(server.client_closed.wait(), 10)  # ... and its connection is not kept

    run(scenario())


def test_a_caller_giving_up_in_the_pool_queue_does_not_cost_the_others_a_connection() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 2\r\n\r\nok"

    async def scenario() -> None:
        hold = asyncio.Event()
        async with serve_raw(answer, hold=hold) as server:
            transport = HttpTransport(settings(pool_size=1))
            try:
                first = asyncio.create_task(transport.call(server.url(), b"1"))
                await server.received.wait()  # the only connection is busy: the next ones queue up
                gives_up = asyncio.create_task(transport.call(server.url(), b"2"))
                waits = asyncio.create_task(transport.call(server.url(), b"3"))
                await asyncio.sleep(0)
                gives_up.cancel()
                hold.set()
                assert await first == b"ok" and await waits == b"ok"
                with pytest.raises(asyncio.CancelledError):
                    await gives_up
            finally:
                await transport.close()
            assert server.requests == 2 and server.connections == 1

    run(scenario())
