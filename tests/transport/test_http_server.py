"""The ingress's HTTP server (io/http_server.py) over real sockets: what a client sends, what it gets back."""

from __future__ import annotations

import asyncio
import contextlib
import typing

from pystatefun.io.http_server import HttpServer, Request, Response, text

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


async def serving() -> tuple[HttpServer, int, Recorder]:
    recorder = Recorder()
    server = HttpServer(recorder, MAX_BODY)
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]
    return server, port, recorder


@contextlib.asynccontextmanager
async def connected() -> typing.AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, Recorder]]:
    """A server and one client connection to it, both closed afterwards."""
    server, port, recorder = await serving()
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
