"""The ingress's HTTP server (io/http_server.py) over real sockets: what a client sends, what it gets back."""

from __future__ import annotations

import asyncio
import contextlib
import typing

from pystatefun.io.http_server import BodyBudget, HttpServer, Request, Response, text

MAX_BODY = 1000


def run(scenario: typing.Callable[[], typing.Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


class Recorder:
    """A handler that answers with what it was asked, after a delay the request may name (?sleep=)."""

    def __init__(self) -> None:
        self.handled: list[Request] = []
        self.finished: list[str] = []

    async def __call__(self, request: Request) -> Response:
        self.handled.append(request)
        await asyncio.sleep(float(request.query.get("sleep", "0")))
        if request.segments == ["boom"]:
            raise RuntimeError("the handler failed")
        self.finished.append(request.raw_path)
        body = f"{request.method} {'|'.join(request.segments)} {request.query} {request.body!r}".encode()
        return Response(200, body, {"Content-Type": "text/plain", "X-Seen": request.headers.get("X-Tag", "-")})


async def serving(**options: typing.Any) -> tuple[HttpServer, int, Recorder]:
    recorder = Recorder()
    server = HttpServer(recorder, MAX_BODY, **options)
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]
    return server, port, recorder


@contextlib.asynccontextmanager
async def connected(
    **options: typing.Any,
) -> typing.AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, Recorder]]:
    """A server (with ``options``) and one client connection to it, both closed afterwards."""
    server, port, recorder = await serving(**options)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer, recorder
    finally:
        writer.close()
        await server.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers = {}
    while (line := await reader.readline()) != b"\r\n":
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


def request(method: str, target: str, body: bytes = b"", headers: str = "") -> bytes:
    return (f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{headers}\r\n").encode() + body


def test_keep_alive_answers_each_request_with_its_own_answer() -> None:
    async def scenario() -> None:
        async with connected() as (reader, writer, recorder):
            writer.write(request("PUT", "/a/b%2Fc/d?wait=1&wait=2&x", b"one", "X-Tag: t1\r\n"))
            status, headers, body = await read_response(reader)
            assert (status, headers["x-seen"]) == (200, "t1")
            assert body == b"PUT a|b/c|d {'wait': '1', 'x': ''} b'one'"
            writer.write(request("POST", "/e", b"two"))
            assert (await read_response(reader))[2] == b"POST e {} b'two'"

    run(scenario)


def test_pipelined_requests_are_answered_in_the_order_they_were_sent() -> None:
    async def scenario() -> None:
        async with connected() as (reader, writer, recorder):
            # the first takes longest: its answer must still come first
            writer.write(request("GET", "/1?sleep=0.2") + request("GET", "/2?sleep=0.05") + request("GET", "/3"))
            bodies = [(await read_response(reader))[2].split()[1] for _ in range(3)]
            assert bodies == [b"1", b"2", b"3"]

    run(scenario)


def test_a_chunked_body_is_read_whole() -> None:
    async def scenario() -> None:
        async with connected() as (reader, writer, recorder):
            writer.write(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            assert (await read_response(reader))[2] == b"POST c {} b'abcde'"

    run(scenario)


def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async def scenario() -> None:
        async with connected() as (reader, writer, recorder):
            writer.write(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"body")
            assert (await read_response(reader))[2] == b"PUT x {} b'body'"

    run(scenario)


def test_a_body_over_the_limit_is_refused_with_413_and_the_connection_closed() -> None:
    async def scenario() -> None:
        server, port, recorder = await serving()
        for head in (f"Content-Length: {MAX_BODY + 1}\r\n", "Transfer-Encoding: chunked\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"PUT /big HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
            if "chunked" in head:
                writer.write(b"%x\r\n" % (MAX_BODY + 1) + b"x" * (MAX_BODY + 1) + b"\r\n0\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert status == 413 and headers["connection"] == "close"
            assert f"larger than {MAX_BODY} bytes".encode() in body
            assert await reader.read() == b""  # closed
            writer.close()
        assert recorder.handled == []
        await server.close()

    run(scenario)


def test_a_malformed_request_gets_400_after_the_answers_before_it() -> None:
    async def scenario() -> None:
        async with connected() as (reader, writer, recorder):
            writer.write(request("GET", "/ok?sleep=0.1") + b"NOT HTTP AT ALL\r\n\r\n")
            assert (await read_response(reader))[0] == 200
            status, headers, body = await read_response(reader)
            assert status == 400 and b"malformed HTTP request" in body
            assert await reader.read() == b""

    run(scenario)


def test_http_1_0_closes_after_its_answer_and_head_gets_no_body() -> None:
    async def scenario() -> None:
        server, port, _ = await serving()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /old HTTP/1.0\r\n\r\n")
        status_line = await reader.readline()
        assert status_line.startswith(b"HTTP/1.1 200")
        rest = await reader.read()  # the server closes: read to the end
        assert b"Connection: close" in rest and rest.endswith(b"GET old {} b''")
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("HEAD", "/h") + request("GET", "/after"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 13" in head  # "HEAD h {} b''"
        assert (await read_response(reader))[2] == b"GET after {} b''"  # no body came between the two
        writer.close()
        await server.close()

    run(scenario)


def test_a_handler_that_raises_gets_500_and_the_connection_goes_on() -> None:
    async def scenario() -> None:
        async with connected() as (reader, writer, recorder):
            writer.write(request("GET", "/boom") + request("GET", "/fine"))
            assert (await read_response(reader))[0] == 500
            assert (await read_response(reader))[0] == 200

    run(scenario)


def test_a_client_that_goes_away_does_not_cancel_its_request() -> None:
    async def scenario() -> None:
        async with connected() as (reader, writer, recorder):
            writer.write(request("PUT", "/slow?sleep=0.2"))
            while not recorder.handled:
                await asyncio.sleep(0.01)
            writer.close()
            await asyncio.sleep(0.4)
            assert recorder.finished == ["/slow?sleep=0.2"]

    run(scenario)


def test_cancel_on_disconnect_cancels_the_handler_of_a_client_that_went_away() -> None:
    async def scenario() -> None:
        async with connected(cancel_on_disconnect=True) as (reader, writer, recorder):
            writer.write(request("PUT", "/slow?sleep=0.3"))
            while not recorder.handled:
                await asyncio.sleep(0.01)
            writer.close()
            await asyncio.sleep(0.5)
            assert recorder.finished == []

    run(scenario)


def test_close_lets_requests_in_progress_finish_and_closes_idle_connections() -> None:
    async def scenario() -> None:
        server, port, recorder = await serving()
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("PUT", "/busy?sleep=0.3"))
        while not recorder.handled:
            await asyncio.sleep(0.01)
        await server.close()
        status, headers, _ = await read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await idle_reader.read() == b""
        idle_writer.close()
        writer.close()
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            pass
        else:
            raise AssertionError("the server still accepts connections after close()")

    run(scenario)


def test_text_answers_end_with_a_newline_and_name_their_type() -> None:
    response = text(405, "no", Allow="PUT")
    assert response.body == b"no\n"
    assert response.headers == {"Content-Type": "text/plain; charset=utf-8", "Allow": "PUT"}


async def refused(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and reason of a refusal, after which the server must have closed the connection."""
    status, headers, body = await asyncio.wait_for(read_response(reader), 3)
    assert headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 3) == b""
    return status, body


def test_a_head_without_end_is_refused_while_it_streams() -> None:
    async def scenario() -> None:
        async with connected(max_header_bytes=1024) as (reader, writer, recorder):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ")
            sent = 0
            while not reader.at_eof() and sent < 100 * 1024:  # no line ever ends
                writer.write(b"a" * 100)
                sent += 100
                await asyncio.sleep(0)
                if reader._buffer:  # type: ignore[attr-defined]  # the answer has come
                    break
            status, body = await refused(reader)
            assert status == 431 and b"larger than 1024 bytes" in body
            assert sent <= 3 * 1024  # refused soon after the limit, not when the line ends
            assert recorder.handled == []

    run(scenario)


def test_a_head_of_the_largest_allowed_size_in_one_read_after_others_is_not_refused() -> None:
    async def scenario() -> None:
        async with connected(max_header_bytes=1024) as (reader, writer, recorder):
            # one write: earlier requests and a head near the limit that ends in a later read
            big = request("GET", "/b", headers=f"X-Fill: {'f' * 900}\r\n")
            burst = request("GET", "/a") * 20 + big[:500]
            writer.write(burst)
            await asyncio.sleep(0.05)
            writer.write(big[500:])
            for _ in range(21):
                assert (await asyncio.wait_for(read_response(reader), 3))[0] == 200

    run(scenario)


def test_a_head_that_takes_too_long_is_answered_408() -> None:
    async def scenario() -> None:
        async with connected(header_timeout=0.3) as (reader, writer, recorder):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            for _ in range(5):  # a byte now and then keeps no deadline off
                await asyncio.sleep(0.1)
                writer.write(b"X: y\r\n")
            status, body = await refused(reader)
            assert status == 408 and b"headers did not arrive within 0.3 s" in body

    run(scenario)


def test_a_body_that_stops_arriving_is_answered_408() -> None:
    async def scenario() -> None:
        async with connected(body_idle_timeout=0.3) as (reader, writer, recorder):
            writer.write(request("PUT", "/x", b"12345")[:-3])
            status, body = await refused(reader)
            assert status == 408 and b"pause at most 0.3 s" in body
            assert recorder.handled == []

    run(scenario)


def test_a_body_that_trickles_past_its_total_time_is_answered_408() -> None:
    async def scenario() -> None:
        async with connected(body_idle_timeout=0.3, body_timeout=0.5) as (reader, writer, recorder):
            writer.write(request("PUT", "/x", b"x" * 100)[:-100])
            for _ in range(10):
                await asyncio.sleep(0.1)
                if reader._buffer:  # type: ignore[attr-defined]
                    break
                writer.write(b"x")
            status, body = await refused(reader)
            assert status == 408 and b"take 0.5 s in all" in body

    run(scenario)


def test_idle_connections_close_after_the_keep_alive_timeout_and_busy_ones_do_not() -> None:
    async def scenario() -> None:
        async with connected(keep_alive_timeout=0.3) as (reader, writer, recorder):
            writer.write(request("GET", "/slow?sleep=0.5"))  # longer than the idle timeout: not idle
            assert (await asyncio.wait_for(read_response(reader), 3))[0] == 200
            started = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(reader.read(), 3) == b""
            assert 0.2 < asyncio.get_running_loop().time() - started < 2.5

    run(scenario)


def test_a_silent_new_connection_is_closed_after_the_keep_alive_timeout() -> None:
    async def scenario() -> None:
        async with connected(keep_alive_timeout=0.3) as (reader, writer, recorder):
            assert await asyncio.wait_for(reader.read(), 3) == b""

    run(scenario)


def test_connections_past_the_cap_get_a_503_and_a_log_line(caplog: typing.Any) -> None:
    async def scenario() -> None:
        server, port, recorder = await serving(max_connections=2, name="test listener")
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            status, body = await refused(reader)
            assert status == 503 and b"limit of 2 open connections" in body
            writer.close()
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and "test listener on 127.0.0.1" in warnings[0] and "limit" in warnings[0]
        for _, writer in held:
            writer.close()
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # room again
        writer.write(request("GET", "/after"))
        assert (await asyncio.wait_for(read_response(reader), 3))[0] == 200
        writer.close()
        await server.close()

    run(scenario)


def test_a_client_that_does_not_read_its_answers_is_not_read_either() -> None:
    async def scenario() -> None:
        server, port, recorder = await serving(write_timeout=1.0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.set_write_buffer_limits(high=1 << 30)
        big = request("GET", "/" + "p" * 900)  # each answer repeats the path: about 1 KB
        writer.write(big * 30_000)  # 30 MB of requests and answers, far more than the socket buffers hold
        handled = -1
        for _ in range(50):  # until it stops handling them (at most 5 s)
            await asyncio.sleep(0.1)
            if len(recorder.handled) == handled:
                break
            handled = len(recorder.handled)
        assert 0 < handled < 20_000  # it stopped reading once its answers piled up
        await asyncio.sleep(1.5)
        # and dropped the connection after write_timeout: nothing more is handled
        assert len(recorder.handled) == handled and not server._connections
        writer.transport.abort()
        await server.close()

    run(scenario)


def test_bodies_past_the_budget_get_503_and_the_budget_is_given_back() -> None:
    async def scenario() -> None:
        budget = BodyBudget(1500)
        server, port, recorder = await serving(body_budget=budget)
        first = await asyncio.open_connection("127.0.0.1", port)
        first[1].write(request("PUT", "/slow?sleep=0.5", b"a" * 1000))
        while not recorder.handled:
            await asyncio.sleep(0.01)
        assert budget.in_use == 1000
        for head in ("Content-Length: 800\r\n", "Transfer-Encoding: chunked\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"PUT /more HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
            if "chunked" in head:
                writer.write(b"190\r\n" + b"b" * 400 + b"\r\n" + b"190\r\n" + b"b" * 400 + b"\r\n0\r\n\r\n")
            status, headers, body = await asyncio.wait_for(read_response(reader), 3)
            assert status == 503 and headers["retry-after"] == "1" and b"budget of 1500" in body
            writer.close()
        assert (await asyncio.wait_for(read_response(first[0]), 3))[0] == 200
        assert budget.in_use == 0
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("PUT", "/fits", b"c" * 1000))
        assert (await asyncio.wait_for(read_response(reader), 3))[0] == 200
        assert budget.in_use == 0
        for _, w in (first, (reader, writer)):
            w.close()
        await server.close()

    run(scenario)


def test_a_connection_lost_mid_body_gives_its_budget_back() -> None:
    async def scenario() -> None:
        budget = BodyBudget(10_000)
        server, port, recorder = await serving(body_budget=budget)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("PUT", "/x", b"z" * 900)[:-100])
        await asyncio.sleep(0.1)
        assert budget.in_use == 900
        writer.close()
        await asyncio.sleep(0.1)
        assert budget.in_use == 0
        await server.close()

    run(scenario)


def test_strict_requests_are_refused_with_the_reason() -> None:
    cases = [
        (request("GET", "/ns/t/%ff"), 400, b"'%ff' is not UTF-8"),
        (request("GET", "/ns/%c3/x"), 400, b"'%c3' is not UTF-8"),
        (request("GET", "/ns/t/x?a=%fe"), 400, b"query string is not UTF-8"),
        (b"GET / HTTP/1.1\r\n\r\n", 400, b"exactly one Host header; this one has 0"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, b"this one has 2"),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, b"HTTP/2.0 is not supported"),
        (b"GET /\r\n\r\n", 505, b"HTTP/0.9 is not supported"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n", 400, b"upgrades"),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 400, b"CONNECT"),
    ]

    async def scenario() -> None:
        server, port, recorder = await serving()
        for sent, status, reason in cases:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(sent + request("GET", "/next"))  # nothing after a refusal is read
            got, body = await refused(reader)
            assert got == status and reason in body, (sent, got, body)
            writer.close()
        assert recorder.handled == []
        await server.close()

    run(scenario)
