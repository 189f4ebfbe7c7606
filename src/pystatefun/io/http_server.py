"""A small HTTP/1.1 server, on asyncio protocols and httptools' request parser: the playground ingress
and egress, and the function endpoint of ``pystatefun serve``.

The ingress is the runtime's busiest HTTP server: every message sent from outside, and every
request/reply round trip, passes through it. aiohttp's server (application, router, middlewares, its
request and response objects) was a fifth of the runtime's CPU per request in the keyed-counter
benchmark; bench/http_servers.py measures this server against aiohttp's and uvicorn's under the same
limits (docs/http.md has the numbers and the decision). It does only what those servers need: requests
in order on keep-alive connections (pipelined ones queue), bodies by Content-Length or chunked,
``Expect: 100-continue``, and an answer with a Content-Length. Everything else of HTTP stays with
aiohttp (the admin API).

One client must not be able to take it down, so every limit is a constructor argument with a safe
default (docs/http.md): the size of a request's head, counted while it streams; a deadline for each
phase of a connection (reading a head, reading a body, idling between requests, a client reading its
answers); a cap on open connections; write-side flow control (a connection whose answers are not read
is not read either); and a budget for request bodies held in memory across every server of the process
(:class:`BodyBudget`). Requests are strict: one ``Host`` on HTTP/1.1, versions 1.0 and 1.1 only, path
segments that are UTF-8 once percent-decoded, no protocol upgrades.

A handler takes a :class:`Request` and returns a :class:`Response`, or an awaitable of one; a Response
returned at once is written at once, with no task for the request. A handler that raises gets a 500
(logged). By default a client that goes away mid-request does not cancel its handler, so a message once
accepted is processed whether or not anyone hears the answer; ``cancel_on_disconnect=True`` cancels it
instead (a function endpoint, whose caller retries).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import os
import typing
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote_to_bytes

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

log = logging.getLogger("pystatefun.io.http_server")

MAX_HEADER_BYTES = 64 * 1024  # the request line and headers of one request
MAX_CONNECTIONS = 1024  # open connections per listener
HEADER_TIMEOUT_SECONDS = 10.0  # from a request's first byte to the end of its headers
BODY_IDLE_TIMEOUT_SECONDS = 30.0  # between two reads of a request's body
BODY_TIMEOUT_SECONDS = 120.0  # for the whole body: 32 MiB at 280 KB/s
KEEP_ALIVE_TIMEOUT_SECONDS = 30.0  # with no request in progress, a fresh connection's first included
WRITE_TIMEOUT_SECONDS = 30.0  # for answers above the write buffer's high-water mark to be read
BODY_BUDGET_BYTES = 256 * 1024 * 1024  # request bodies held at once by all the servers of a process
MAX_QUEUED_REQUESTS = 16  # pipelined requests read ahead of the one in progress; then reading pauses
LINGER_SECONDS = 2.0  # after a refusal, what the client still sends is read (and dropped) this long
SHUTDOWN_GRACE_SECONDS = 5.0  # how long close() lets requests in progress finish
REFUSAL_REPORT_SECONDS = 5.0  # connections refused at the cap are logged at most this often


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


Handler = typing.Callable[[Request], typing.Awaitable[Response] | Response]
"""Answers a request: a coroutine (awaited in a task), or the Response itself when it needs no waiting."""


def text(status: int, reason: str, **headers: str) -> Response:
    """A plain-text answer: the reason and a newline."""
    return Response(status, (reason + "\n").encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8", **headers})


class BodyBudget:
    """The bytes of request bodies a process holds in memory at once, shared by all its servers.

    A request reserves its declared Content-Length when its headers arrive (a chunked one reserves as its
    chunks arrive) and gives the bytes back when its handler is done with it; what does not fit is
    refused with a 503 and ``Retry-After``, so that many large bodies at once cannot exhaust memory even
    though each is within its server's ``max_body_bytes``. One event loop uses it: no locking."""

    def __init__(self, max_bytes: int = BODY_BUDGET_BYTES):
        if max_bytes <= 0:
            raise ValueError(f"a body budget must be a positive number of bytes, not {max_bytes}")
        self.max_bytes = max_bytes
        self.in_use = 0

    def reserve(self, n: int) -> bool:
        """Takes ``n`` bytes if they fit in what is left; False (and nothing taken) if they do not."""
        if self.in_use + n > self.max_bytes:
            return False
        self.in_use += n
        return True

    def release(self, n: int) -> None:
        self.in_use -= n


PROCESS_BODY_BUDGET = BodyBudget()  # the budget of every server that is not given one


class PortUnavailable(OSError):
    """A listener cannot bind its port (most often: another process has it): which listener, where, why,
    and the setting that changes its port (``pystatefun run`` and ``pystatefun serve`` both say it so)."""

    def __init__(self, component: str, setting: str, host: str, port: int, error: OSError):
        # the errno's own words: an event loop's message may wrap them in its own ("error while attempting
        # to bind on address ...")
        why = (os.strerror(error.errno) if error.errno else str(error)).lower()
        super().__init__(f"the {component} cannot listen on {host}:{port}: {why}; {setting}")


class ConnectionCap:
    """A listener's cap on open connections: a connection past it gets a 503 that says why and is closed
    at once, and the refusals are logged, the first after a quiet spell at once, then at most every
    REFUSAL_REPORT_SECONDS. The HttpServer has one; so has the admin API's aiohttp listener
    (admin/server.py), which counts its connections itself."""

    def __init__(self, name: str, max_connections: int, reason: str):
        self.name = name  # logged with the address it listens on
        self.max_connections = max_connections
        self.address = ""
        self._answer = _encode(text(503, reason, **{"Retry-After": "1"}), close=True)
        self._refused = 0  # connections refused since the last log line about them
        self._report: asyncio.TimerHandle | None = None

    def refuse(self, transport: asyncio.BaseTransport) -> None:
        typing.cast(asyncio.Transport, transport).write(self._answer)
        transport.close()
        self._refused += 1
        if self._report is None:
            self._log_refusals()

    def close(self) -> None:
        if self._report is not None:
            self._report.cancel()
            self._report = None

    def _log_refusals(self) -> None:
        self._report = None
        if self._refused:
            log.warning("%s on %s refused %d connection(s): it has %d open, its limit (max_connections); "
                        "the next report in %g s at the earliest", self.name, self.address, self._refused,
                        self.max_connections, REFUSAL_REPORT_SECONDS)
            self._refused = 0
            self._report = asyncio.get_running_loop().call_later(REFUSAL_REPORT_SECONDS, self._log_refusals)


class HttpServer:
    """Serves ``handler`` on a TCP address until :meth:`close`.

    ``max_body_bytes`` bounds one request's body (413 beyond it); the other limits are described in the
    module docstring and docs/http.md. Timeouts are in seconds."""

    def __init__(
        self,
        handler: Handler,
        max_body_bytes: int,
        *,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT_SECONDS,
        body_idle_timeout: float = BODY_IDLE_TIMEOUT_SECONDS,
        body_timeout: float = BODY_TIMEOUT_SECONDS,
        keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT_SECONDS,
        write_timeout: float = WRITE_TIMEOUT_SECONDS,
        body_budget: BodyBudget | None = None,
        cancel_on_disconnect: bool = False,
        name: str = "HTTP server",
    ):
        for option, value in (("max_body_bytes", max_body_bytes), ("max_header_bytes", max_header_bytes),
                              ("max_connections", max_connections), ("header_timeout", header_timeout),
                              ("body_idle_timeout", body_idle_timeout), ("body_timeout", body_timeout),
                              ("keep_alive_timeout", keep_alive_timeout), ("write_timeout", write_timeout)):
            if not value > 0:
                raise ValueError(f"HttpServer's {option} must be a positive number, not {value!r}")
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_idle_timeout = body_idle_timeout
        self.body_timeout = body_timeout
        self.keep_alive_timeout = keep_alive_timeout
        self.write_timeout = write_timeout
        self.body_budget = PROCESS_BODY_BUDGET if body_budget is None else body_budget
        self.cancel_on_disconnect = cancel_on_disconnect
        self.name = name  # logged with the address it listens on
        self.address = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.cap = ConnectionCap(name, max_connections,
                                 f"the server is at its limit of {max_connections} open connections: retry later")

    async def start(self, host: str, port: int) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(lambda: _Connection(self), host, port)
        bound = self._server.sockets[0].getsockname()
        self.address = self.cap.address = f"{bound[0]}:{bound[1]}"

    async def close(self) -> None:
        """Stops accepting, lets requests in progress finish (for a while), then closes every connection."""
        if self._server is None:
            return
        self._server.close()
        self.cap.close()
        for connection in list(self._connections):
            connection.close_when_idle()
        busy = [c.worker for c in self._connections if c.worker is not None]
        if busy:
            await asyncio.wait(busy, timeout=SHUTDOWN_GRACE_SECONDS)
        for connection in list(self._connections):
            connection.abort()
        await self._server.wait_closed()
        self._server = None


_REASONS = {s.value: s.phrase for s in HTTPStatus}

# what bounds a connection's time now (_Connection.phase)
_BUSY = 0  # a handler is working on its request: the client waits for us, not the other way round
_IDLE = 1  # no request in progress: keep_alive_timeout
_HEAD = 2  # a request's head is arriving: header_timeout from its first byte
_BODY = 3  # a request's body is arriving: body_idle_timeout between reads, body_timeout in all
_WRITE = 4  # answers wait in the write buffer above its high-water mark: write_timeout
_LINGER = 5  # a refusal is sent and our side shut: LINGER_SECONDS, then the connection closes


class _Connection(asyncio.Protocol):
    """One client connection: parses requests as bytes arrive and answers them in order."""

    def __init__(self, server: HttpServer):
        self.server = server
        self.loop = typing.cast(asyncio.AbstractEventLoop, server.loop)
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[tuple[Request, bool, int]] = collections.deque()  # keep alive, budget
        self.worker: asyncio.Task | None = None  # answers the queued requests, one at a time
        self.closing = False  # answer what is queued, then close
        self.lost = False
        self.refusal: Response | None = None  # the answer to a request that could not be read: the last one
        self.reading = True
        self.write_paused = False  # the transport's buffer is above its high-water mark
        self.drained: asyncio.Future | None = None  # the worker waits on it while write_paused
        self.phase = _BUSY
        self.deadline: float | None = None  # when the current phase runs out
        self.timer: asyncio.TimerHandle | None = None  # fires at or before the deadline, never after
        self.body_deadline = 0.0
        self.heads_begun = 0
        self.in_head = False
        self.in_body = False
        self.head_carry = 0  # bytes of a head received after the read in which it began
        self.reserved = 0  # bytes of the body budget held for the request being read
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._header_map: CIMultiDict[str] | None = None  # the headers, once they are complete
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)
        if len(self.server._connections) >= self.server.max_connections:
            self.closing = True
            self.server.cap.refuse(self.transport)
            return
        self.server._connections.add(self)
        self._watch()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # refused already (a bad request): what follows it is not read
        limit = self.server.max_header_bytes
        if len(data) <= limit:
            if not self._feed(data):
                return
        else:  # in pieces no larger than a head may be, so that a head without end is caught in time
            view = memoryview(data)
            for start in range(0, len(data), limit):
                if not self._feed(view[start:start + limit]):
                    return
        if self.queue and self.worker is None:
            self._answer_ready()
            if self.closing:
                return
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.closing = self.lost = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        budget = self.server.body_budget
        budget.release(self.reserved)
        self.reserved = 0
        for _, _, reserved in self.queue:
            budget.release(reserved)
        self.queue.clear()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        if self.worker is not None and self.server.cancel_on_disconnect:
            self.worker.cancel()

    def pause_writing(self) -> None:
        # answers pile up unread: stop reading (and answering) until the client catches up, and give it
        # write_timeout to do so
        self.write_paused = True
        self._pause_reading()
        self._arm(_WRITE, self.loop.time() + self.server.write_timeout)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        if not self.closing:
            self._resume_reading()
            self._watch()

    # -- httptools callbacks -------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.heads_begun += 1
        self.in_head = True
        self.head_carry = 0
        self.phase = _BUSY  # so that _watch starts this head's clock
        self._url = b""
        self._headers = []
        self._header_map = None
        self._header_bytes = 0
        self._body = []
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > self.server.max_header_bytes:
            raise _Refused(self._head_too_large())
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.in_body = True
        version = self.parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise _Refused(text(505, f"HTTP/{version} is not supported: send HTTP/1.1 requests"))
        if self.parser.should_upgrade():  # the bytes after this head belong to another protocol
            raise _Refused(text(400, "protocol upgrades (and CONNECT) are not supported: send plain HTTP/1.1 "
                                     "requests without an Upgrade header"))
        self._header_map = headers = CIMultiDict(self._headers)
        hosts = len(headers.getall("host", ()))
        # the parser has checked that Content-Length is a number, and that there is only one
        length = int(headers.get("content-length", 0))
        expects_continue = "expect" in headers and any(
            value.strip().lower() == "100-continue" for value in headers.getall("expect"))
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            raise _Refused(text(400, f"an HTTP/1.1 request needs exactly one Host header; this one has {hosts}"))
        if length:
            if length > self.server.max_body_bytes:
                raise _Refused(self._too_large())
            if not self.server.body_budget.reserve(length):
                raise _Refused(self._over_budget(length))
            self.reserved = length
        if expects_continue:  # the client holds the body back until told to send it
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        self._body_bytes += len(chunk)
        if self._body_bytes > self.reserved:  # chunked: reserve as it grows
            if self._body_bytes > self.server.max_body_bytes:
                raise _Refused(self._too_large())
            if not self.server.body_budget.reserve(self._body_bytes - self.reserved):
                raise _Refused(self._over_budget(self._body_bytes))
            self.reserved = self._body_bytes
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        self.in_body = False
        try:
            url = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            raise _Refused(text(400, f"malformed request target {self._url[:200]!r}")) from None
        path = url.path
        try:
            if b"%" in path:
                segments = [unquote_to_bytes(s).decode("utf-8") for s in path.split(b"/")[1:]]
            else:
                segments = path.decode("utf-8").split("/")[1:]
        except UnicodeDecodeError:
            raise _Refused(_not_utf8(path)) from None
        query: dict[str, str] = {}
        if url.query:
            try:
                for name, value in parse_qsl(url.query.decode("utf-8"), keep_blank_values=True, errors="strict"):
                    query.setdefault(name, value)
            except UnicodeDecodeError:
                raise _Refused(text(400, "the query string is not UTF-8 once percent-decoded")) from None
        request = Request(self.parser.get_method().decode("ascii"), self._url.decode("latin-1"), segments, query,
                          CIMultiDictProxy(self._header_map), b"".join(self._body))
        self._body.clear()  # its bytes are in the request now: not held twice while it waits
        self.queue.append((request, self.parser.should_keep_alive(), self.reserved))
        self.reserved = 0  # the queue holds it now
        if len(self.queue) >= MAX_QUEUED_REQUESTS:
            self._pause_reading()
        # answered when the read that completed it is parsed (data_received), or by the worker

    # -- answering -----------------------------------------------------------------------------------------

    def _answer_ready(self) -> None:
        """Answers the queued requests right here while their handlers answer at once (a handler may return
        a Response instead of an awaitable: the function endpoint does for a synchronous function), with
        no task per request. An awaitable, and the requests queued behind it, go on in a task of their
        own, the worker; so do answers while writing is paused."""
        queue = self.queue
        while queue and not self.write_paused:
            request, keep_alive, reserved = queue[0]
            context = contextvars.copy_context()  # what a task per request would have run it in
            try:
                handling = context.run(self.server.handler, request)
            except Exception:
                log.exception("%s %s failed", request.method, request.raw_path)
                handling = text(500, "internal error: the server's log has the details")
            if handling.__class__ is not Response:
                # an awaitable: the worker takes the request off the queue and awaits it (and if it is
                # cancelled before it begins, the request is still queued, so its body budget goes back)
                self.worker = self.loop.create_task(self._answer_queued(handling), context=context)
                if asyncio.iscoroutine(handling):  # which then nobody awaits (a check cached by type, unlike an ABC)
                    self.worker.add_done_callback(lambda _, coroutine=handling: coroutine.close())
                return
            queue.popleft()
            if not self.reading:
                self._resume_reading()
            response = handling
            self.server.body_budget.release(reserved)
            if self._answered(request, keep_alive, response):
                return
        if queue or self.refusal is not None:
            self.worker = self.loop.create_task(self._answer_queued())

    async def _answer_queued(self, started: typing.Awaitable[Response] | None = None) -> None:
        """The worker: answers the queued requests in order, the first with ``started`` if given (what its
        handler gave _answer_ready), then the refusal if there is one."""
        budget = self.server.body_budget
        try:
            while self.queue:
                if self.write_paused and started is None:  # earlier answers are not being read: make no more
                    self.drained = self.loop.create_future()
                    await self.drained
                    self.drained = None
                    continue
                request, keep_alive, reserved = self.queue.popleft()
                if not self.reading:
                    self._resume_reading()
                handling, started = started, None
                try:
                    if handling is None:
                        handling = self.server.handler(request)
                    response = handling if handling.__class__ is Response else await handling
                except Exception:
                    log.exception("%s %s failed", request.method, request.raw_path)
                    response = text(500, "internal error: the server's log has the details")
                finally:
                    budget.release(reserved)
                if self._answered(request, keep_alive, response):
                    return
            if self.refusal is not None:
                self._write(self.refusal, close=True)
                self._linger()
        finally:
            self.worker = None
            if not self.closing:
                self._watch()

    def _answered(self, request: Request, keep_alive: bool, response: Response) -> bool:
        """Writes the answer to ``request``; True if it was the connection's last (it is closing)."""
        last = not keep_alive or (self.closing and not self.queue and self.refusal is None)
        self._write(response, head_only=request.method == "HEAD", close=last)
        if last:
            self._close()
        return last

    def _write(self, response: Response, head_only: bool = False, close: bool = False) -> None:
        if self.transport.is_closing():
            return  # the client went away; the request was still handled
        self.transport.write(_encode(response, head_only, close))

    def _too_large(self) -> Response:
        return text(413, f"the request body is larger than {self.server.max_body_bytes} bytes")

    def _over_budget(self, size: int) -> Response:
        budget = self.server.body_budget
        return text(503, f"the server holds {budget.in_use} bytes of request bodies, and {size} more would pass "
                         f"its budget of {budget.max_bytes}: retry later", **{"Retry-After": "1"})

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.server.max_header_bytes:
            raise _Refused(self._head_too_large())

    def _head_too_large(self) -> Response:
        return text(431, f"the request line and headers are larger than {self.server.max_header_bytes} bytes")

    def _feed(self, data: bytes | memoryview) -> bool:
        """Parses ``data``; False if the connection stops reading because of it."""
        begun = self.heads_begun
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:  # raised by one of the callbacks above
            if not isinstance(e.__context__, _Refused):
                raise
            self._refuse(e.__context__.response)
            return False
        except httptools.HttpParserError as e:
            self._refuse(text(400, f"malformed HTTP request: {e}"))
            return False
        # the parser keeps an unfinished header line to itself, so a head that goes on is counted here:
        # every byte of a read that neither began nor ended it is part of it
        if self.in_head and self.heads_begun == begun:
            self.head_carry += len(data)
            if self.head_carry > self.server.max_header_bytes:
                self._refuse(self._head_too_large())
                return False
        return True

    def _refuse(self, response: Response) -> None:
        """Answers a request that cannot be read and closes: the rest of the stream cannot be trusted.
        Requests before it that are still queued or in progress are answered first."""
        self.closing = True
        self.refusal = response
        self.server.body_budget.release(self.reserved)
        self.reserved = 0
        self._pause_reading()
        if not self.write_paused:  # else the write deadline stays: the refusal may never be read either
            self._arm(_BUSY, None)
        if self.worker is None:
            self.worker = self.loop.create_task(self._answer_queued())

    # -- flow control and deadlines ------------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if (not self.reading and not self.closing and not self.write_paused
                and len(self.queue) < MAX_QUEUED_REQUESTS // 2):
            self.reading = True
            self.transport.resume_reading()

    def _watch(self) -> None:
        """Sets the deadline of the phase the connection is in now."""
        if self.write_paused:
            return  # pause_writing set the deadline that matters
        if self.in_head:
            if self.phase != _HEAD:  # counted from the read in which the head began
                self._arm(_HEAD, self.loop.time() + self.server.header_timeout)
        elif self.in_body:
            now = self.loop.time()
            if self.phase != _BODY:
                self.body_deadline = now + self.server.body_timeout
            self._arm(_BODY, min(now + self.server.body_idle_timeout, self.body_deadline))
        elif self.worker is not None:
            self._arm(_BUSY, None)
        else:
            self._arm(_IDLE, self.loop.time() + self.server.keep_alive_timeout)

    def _arm(self, phase: int, deadline: float | None) -> None:
        # one timer per connection: moving a deadline later leaves it be (it re-arms when it fires early),
        # so a busy connection does not make a new timer per request
        self.phase = phase
        self.deadline = deadline
        if deadline is not None and (self.timer is None or self.timer.when() > deadline):
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self.timer = None
        if self.deadline is None or self.lost:
            return
        if self.loop.time() < self.deadline - 0.001:  # the deadline moved since the timer was set
            self.timer = self.loop.call_at(self.deadline, self._expire)
            return
        server = self.server
        if self.phase == _IDLE:
            log.debug("%s on %s: closing a connection idle for %g s", server.name, server.address,
                      server.keep_alive_timeout)
            self._close()
        elif self.phase == _HEAD:
            self._refuse(text(408, f"the request's headers did not arrive within {server.header_timeout:g} s"))
        elif self.phase == _BODY:
            self._refuse(text(408, f"the request's body did not arrive in time: it may pause at most "
                                   f"{server.body_idle_timeout:g} s and take {server.body_timeout:g} s in all"))
        elif self.phase == _LINGER:
            self.transport.abort()  # our answer was sent or will never be read: drop what is unread
        elif self.phase == _WRITE:
            log.debug("%s on %s: aborting a connection that read no answer for %g s", server.name, server.address,
                      server.write_timeout)
            self.closing = True
            self.transport.abort()

    def _close(self) -> None:
        """Closes once what is written is sent; a client that does not read it has write_timeout."""
        self.closing = True
        if self.lost:
            return
        self.transport.close()
        if self.transport.get_write_buffer_size():
            self._arm(_WRITE, self.loop.time() + self.server.write_timeout)

    def _linger(self) -> None:
        """Shuts our side after a refusal but reads on for a while. Closing a socket with unread bytes
        (the rest of a body or head the client is still sending) resets the connection, and the reset
        can destroy the refusal before the client reads it."""
        self.closing = True
        if self.lost:
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.reading = True
        self.transport.resume_reading()  # data_received drops what comes now
        self._arm(_LINGER, self.loop.time() + LINGER_SECONDS)

    def close_when_idle(self) -> None:
        """At shutdown: an idle connection closes now, a busy one after the answers in progress."""
        self.closing = True
        if self.worker is None:
            self._close()

    def abort(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.transport.abort()


def _encode(response: Response, head_only: bool = False, close: bool = False) -> bytes:
    body = response.body
    head = f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}\r\nContent-Length: {len(body)}\r\n"
    for name, value in response.headers.items():
        head += f"{name}: {value}\r\n"
    if close:
        head += "Connection: close\r\n"
    encoded = (head + "\r\n").encode("latin-1")
    return encoded if head_only else encoded + body


def _not_utf8(path: bytes) -> Response:
    """The 400 for a path with a segment that is not UTF-8 once percent-decoded, naming the segment."""
    for segment in path.split(b"/"):
        try:
            unquote_to_bytes(segment).decode("utf-8")
        except UnicodeDecodeError:
            break
    return text(400, f"the path segment {segment.decode('latin-1')!r} is not UTF-8 once percent-decoded: "
                     "percent-encode the UTF-8 bytes of an id")


class _Refused(Exception):
    """Raised from a parser callback to stop reading a request that will not be handled."""

    def __init__(self, response: Response):
        self.response = response
