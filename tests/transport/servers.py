"""Real HTTP servers for the transport tests: aiohttp on 127.0.0.1 or a Unix socket, counting what they see;
a raw one writing fixed bytes; a hostile one misbehaving on purpose."""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import threading
import time
import typing
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

OCTET = "application/octet-stream"

Handler = typing.Callable[[web.Request, int], typing.Awaitable[web.StreamResponse]]
"""Answers a request; told which request (1, 2, ...) this is."""


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    handler: Handler
    base: str = ""
    requests: list[Seen] = field(default_factory=list)
    connections: set[typing.Any] = field(default_factory=set)

    def url(self, path: str = "/statefun") -> str:
        return self.base + path

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Seen(request.path_qs, dict(request.headers), body))
        self.connections.add(request.transport)
        return await self.handler(request, len(self.requests))


@asynccontextmanager
async def serve(
    handler: Handler, *, ssl_context: ssl.SSLContext | None = None, unix: Path | None = None
) -> typing.AsyncIterator[Server]:
    server = Server(handler)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server._handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
    await runner.setup()
    site: web.BaseSite
    if unix is not None:
        site = web.UnixSite(runner, str(unix), ssl_context=ssl_context)
        server.base = f"{'https' if ssl_context else 'http'}+unix://{unix}"
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(runner, sock, ssl_context=ssl_context)
        server.base = f"{'https' if ssl_context else 'http'}://127.0.0.1:{sock.getsockname()[1]}"
    await site.start()
    try:
        yield server
    finally:
        await runner.cleanup()


def reply(body: bytes = b"", *, status: int = 200, content_type: str = OCTET) -> Handler:
    """Always the same answer."""

    async def handler(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(body=body, status=status, headers={"Content-Type": content_type})

    return handler


def echo() -> Handler:
    async def handler(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(body=b"re:" + await request.read(), content_type=OCTET)

    return handler


def failing_first(failures: int, status: int, body: bytes = b"ok") -> Handler:
    """``status`` for the first ``failures`` requests, then a 200 with ``body``."""

    async def handler(request: web.Request, n: int) -> web.StreamResponse:
        if n <= failures:
            return web.Response(text=f"failure {n}", status=status)
        return web.Response(body=body, content_type=OCTET)

    return handler


def slow_first(seconds: float, body: bytes = b"ok") -> Handler:
    """Sleeps ``seconds`` before answering the first request only."""

    async def handler(request: web.Request, n: int) -> web.StreamResponse:
        if n == 1:
            await asyncio.sleep(seconds)
        return web.Response(body=body, content_type=OCTET)

    return handler


def refused_port() -> tuple[socket.socket, int]:
    """A port bound but not listening, so connecting is refused for as long as the socket is kept open."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


@dataclass
class RawServer:
    """A server writing the same bytes verbatim to every request (what aiohttp's server never sends:
    HTTP/1.0, interim responses, ...)."""

    port: int = 0
    requests: int = 0
    connections: int = 0
    received: asyncio.Event = field(default_factory=asyncio.Event)  # set at every request
    client_closed: asyncio.Event = field(default_factory=asyncio.Event)  # the client closed a connection

    def url(self, path: str = "/statefun") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@asynccontextmanager
async def serve_raw(
    answer: bytes, *, close: bool = False, hold: asyncio.Event | None = None
) -> typing.AsyncIterator[RawServer]:
    """Answers every request with ``answer`` (once ``hold`` is set, if given) and then closes the
    connection if ``close``; else keeps it open for the next request."""
    server = RawServer()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    server.client_closed.set()
                    return
                length = next(
                    (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
                    0,
                )
                await reader.readexactly(length)
                server.requests += 1
                server.received.set()
                if hold is not None:
                    await hold.wait()
                writer.write(answer)
                await writer.drain()
                if close:
                    return
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


# -- a hostile function server ----------------------------------------------------------------------------

Answer = typing.Callable[[], typing.Iterator["bytes | float"]]
"""What a hostile server does after reading a request: bytes to write, or a float, seconds to pause."""

HOSTILE_CAP_BYTES = 256 * 1024 * 1024  # a hostile connection gives up writing after this many bytes...
HOSTILE_CAP_SECONDS = 15.0  # ...or this long: the test then fails on the counts, it does not hang
HOSTILE_SEND_BUFFER = 64 * 1024  # a small socket buffer, so that what it wrote is close to what was read


@dataclass
class Hostile:
    """A function server misbehaving on purpose, in threads of its own with blocking sockets (so that its
    writing does not take turns on the event loop of the client under test), counting what it managed."""

    port: int = 0
    connections: int = 0
    written: int = 0  # bytes it managed to write, all connections together
    closed_by_client: int = 0  # connections on which the client gave up (closed or reset)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/statefun") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def serve_hostile(answer: Answer) -> typing.Iterator[Hostile]:
    """Answers every request on 127.0.0.1 with ``answer()``; everything it started stops on exit."""
    hostile = Hostile()
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    hostile.port = listener.getsockname()[1]
    threads: list[threading.Thread] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener was closed
                return
            with hostile.lock:
                hostile.connections += 1
            thread = threading.Thread(target=_hostile_connection, args=(connection, answer, hostile, stop), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield hostile
    finally:
        stop.set()
        acceptor.join(timeout=5)
        listener.close()
        for thread in threads:
            thread.join(timeout=5)


def _hostile_connection(connection: socket.socket, answer: Answer, hostile: Hostile, stop: threading.Event) -> None:
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, HOSTILE_SEND_BUFFER)
    connection.settimeout(1.0)
    started = time.monotonic()
    try:
        with connection:
            if not _read_request(connection, stop):
                return
            written = 0
            for step in answer():
                if stop.is_set() or written > HOSTILE_CAP_BYTES or time.monotonic() - started > HOSTILE_CAP_SECONDS:
                    return
                if isinstance(step, float):
                    if _client_closed_within(connection, step):
                        raise ConnectionResetError
                    continue
                view = memoryview(step)
                while view:
                    try:
                        sent = connection.send(view)
                    except TimeoutError:  # the client stopped reading: look again (the caps still apply)
                        if stop.is_set() or time.monotonic() - started > HOSTILE_CAP_SECONDS:
                            return
                        continue
                    view = view[sent:]
                    written += sent
                    with hostile.lock:
                        hostile.written += sent
            # all said: wait for the client to give up, as a server keeping the connection open does
            while not stop.is_set() and time.monotonic() - started < HOSTILE_CAP_SECONDS:
                if _client_closed_within(connection, 0.1):
                    raise ConnectionResetError
    except (ConnectionResetError, BrokenPipeError):
        with hostile.lock:
            hostile.closed_by_client += 1


def _read_request(connection: socket.socket, stop: threading.Event) -> bool:
    """Reads one request (head and Content-Length body); False if the client went away first."""
    data = b""
    length: int | None = None
    while length is None or len(data) < length:
        if stop.is_set():
            return False
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return False
        data += chunk
        if length is None and b"\r\n\r\n" in data:
            head, _, data = data.partition(b"\r\n\r\n")
            length = next(
                (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
                0,
            )
    return True


def _client_closed_within(connection: socket.socket, seconds: float) -> bool:
    """Waits up to ``seconds``; True when the client closed or reset the connection meanwhile."""
    readable, _, _ = select.select([connection], [], [], seconds)
    if not readable:
        return False
    try:
        return connection.recv(65536) == b""
    except OSError:
        return True
