"""Real HTTP servers for the transport tests: aiohttp on 127.0.0.1 or a Unix socket, counting what they see."""

from __future__ import annotations

import asyncio
import socket
import ssl
import typing
from contextlib import asynccontextmanager
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
