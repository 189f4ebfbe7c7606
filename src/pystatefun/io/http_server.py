"""A small HTTP/1.1 server, on asyncio protocols and httptools' request parser: the playground ingress
and egress, and the function endpoint of ``pystatefun serve``.

The ingress is the runtime's busiest HTTP server: every message sent from outside, and every
request/reply round trip, passes through it. aiohttp's server (application, router, middlewares, its
request and response objects) was a fifth of the runtime's CPU per request in the keyed-counter
benchmark. With a handler that does nothing, on one core of this machine, aiohttp answers 5,400-6,200
requests/s and this server 13,300-14,700. It does only what those servers need: requests in order on
keep-alive connections (pipelined ones queue), bodies by Content-Length or chunked,
``Expect: 100-continue``, a body size limit, and an answer with a Content-Length. Everything else of
HTTP stays with aiohttp (the admin API).

A handler takes a :class:`Request` and returns a :class:`Response`. A handler that raises gets a 500
(logged); a client that goes away mid-request does not cancel its handler, so a message once accepted is
processed whether or not anyone hears the answer.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import typing
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

log = logging.getLogger("pystatefun.io.http_server")

MAX_HEADER_BYTES = 64 * 1024
MAX_QUEUED_REQUESTS = 16  # pipelined requests read ahead of the one in progress; then reading pauses
SHUTDOWN_GRACE_SECONDS = 5.0  # how long close() lets requests in progress finish


@dataclass(slots=True)
class Request:
    method: str
    raw_path: str  # the request target as sent: path and query, still percent-encoded
    segments: list[str]  # the path's segments, each percent-decoded: "/a/b%2Fc" -> ["a", "b/c"]
    query: dict[str, str]  # the first value of each query parameter
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = typing.Callable[[Request], typing.Awaitable[Response]]


def text(status: int, reason: str, **headers: str) -> Response:
    """A plain-text answer: the reason and a newline."""
    return Response(status, (reason + "\n").encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8", **headers})


_REASONS = {s.value: s.phrase for s in HTTPStatus}


class HttpServer:
    """Serves ``handler`` on a TCP address until :meth:`close`."""

    def __init__(self, handler: Handler, max_body_bytes: int):
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.get_running_loop().create_server(lambda: _Connection(self), host, port)

    async def close(self) -> None:
        """Stops accepting, lets requests in progress finish (for a while), then closes every connection."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.close_when_idle()
        busy = [c.worker for c in self._connections if c.worker is not None]
        if busy:
            await asyncio.wait(busy, timeout=SHUTDOWN_GRACE_SECONDS)
        for connection in list(self._connections):
            connection.abort()
        await self._server.wait_closed()
        self._server = None


class _Connection(asyncio.Protocol):
    """One client connection: parses requests as bytes arrive and answers them in order."""

    def __init__(self, server: HttpServer):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[tuple[Request, bool]] = collections.deque()  # (request, keep alive)
        self.worker: asyncio.Task | None = None  # answers the queued requests, one at a time
        self.closing = False  # answer what is queued, then close
        self.refusal: Response | None = None  # the answer to a request that could not be read: the last one
        self.paused = False
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)
        self.server._connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # refused already (a bad request): what follows it is not read
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(text(400, "protocol upgrades are not supported: send plain HTTP/1.1 requests"))
        except httptools.HttpParserCallbackError as e:  # raised by one of the callbacks below
            if not isinstance(e.__context__, _Refused):
                raise
            self._refuse(e.__context__.response)
        except httptools.HttpParserError as e:
            self._refuse(text(400, f"malformed HTTP request: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.closing = True
        self.queue.clear()

    # -- httptools callbacks -------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._body = []
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value))
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        expects_continue = False
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == "content-length" and value.strip().isdigit() and int(value) > self.server.max_body_bytes:
                raise _Refused(self._too_large())
            if lowered == "expect" and value.strip().lower() == "100-continue":
                expects_continue = True
        if expects_continue:  # the client holds the body back until told to send it
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        self._body_bytes += len(chunk)
        if self._body_bytes > self.server.max_body_bytes:  # chunked, so not refused by its Content-Length
            raise _Refused(self._too_large())
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        try:
            url = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            raise _Refused(text(400, f"malformed request target {self._url[:200]!r}")) from None
        path = url.path.decode("latin-1")
        segments = [unquote(s) if "%" in s else s for s in path.split("/")[1:]]
        query: dict[str, str] = {}
        if url.query:
            for name, value in parse_qsl(url.query.decode("latin-1"), keep_blank_values=True):
                query.setdefault(name, value)
        request = Request(self.parser.get_method().decode("ascii"), self._url.decode("latin-1"), segments, query,
                          CIMultiDictProxy(CIMultiDict(self._headers)), b"".join(self._body))
        self.queue.append((request, self.parser.should_keep_alive()))
        if len(self.queue) >= MAX_QUEUED_REQUESTS and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._answer_queued())

    # -- answering -----------------------------------------------------------------------------------------

    async def _answer_queued(self) -> None:
        try:
            while self.queue:
                request, keep_alive = self.queue.popleft()
                if self.paused and len(self.queue) < MAX_QUEUED_REQUESTS // 2 and not self.closing:
                    self.paused = False
                    self.transport.resume_reading()
                try:
                    response = await self.server.handler(request)
                except Exception:
                    log.exception("%s %s failed", request.method, request.raw_path)
                    response = text(500, "internal error: the runtime's log has the details")
                last = not keep_alive or (self.closing and not self.queue and self.refusal is None)
                self._write(response, head_only=request.method == "HEAD", close=last)
                if last:
                    self.transport.close()
                    return
            if self.refusal is not None:
                self._write(self.refusal, close=True)
                self.transport.close()
        finally:
            self.worker = None

    def _write(self, response: Response, head_only: bool = False, close: bool = False) -> None:
        if self.transport.is_closing():
            return  # the client went away; the request was still handled
        body = response.body
        lines = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}\r\n",
                 f"Content-Length: {len(body)}\r\n"]
        for name, value in response.headers.items():
            lines.append(f"{name}: {value}\r\n")
        if close:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        self.transport.write(head if head_only else head + body)

    def _too_large(self) -> Response:
        return text(413, f"the request body is larger than {self.server.max_body_bytes} bytes")

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise _Refused(text(431, f"the request line and headers are larger than {MAX_HEADER_BYTES} bytes"))

    def _refuse(self, response: Response) -> None:
        """Answers a request that cannot be read and closes: the rest of the stream cannot be trusted.
        Requests before it that are still queued or in progress are answered first."""
        self.closing = True
        self.refusal = response
        self.transport.pause_reading()
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._answer_queued())

    def close_when_idle(self) -> None:
        """At shutdown: an idle connection closes now, a busy one after the answers in progress."""
        self.closing = True
        if self.worker is None:
            self.transport.close()

    def abort(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.transport.abort()


class _Refused(Exception):
    """Raised from a parser callback to stop reading a request that will not be handled."""

    def __init__(self, response: Response):
        self.response = response
