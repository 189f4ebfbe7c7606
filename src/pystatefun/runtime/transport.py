"""The HTTP client that calls remote functions with the StateFun request-reply protocol (spec §2.2, §2.7).

One ``HttpTransport`` per endpoint: it POSTs a serialized ``ToFunction`` and returns the ``FromFunction``
bytes, over pooled HTTP/1.1 keep-alive connections (TCP, or a Unix domain socket for ``http+unix`` /
``https+unix`` URLs), retrying what may succeed when asked again (``retry.RetryPolicy``) inside one total
call budget, and failing with a ``RemoteCallError`` that says what the function answered.

The client is our own, on asyncio's protocols and the httptools response parser: the request is always
the same small POST, and a general client (aiohttp's) spent about 100 µs of CPU per call on this, three
times what this one does, which made it the runtime's largest cost per remote call.

Timeouts per attempt: ``connect`` bounds establishing a new connection; ``read`` bounds each wait for
response bytes once the request is written, capped by what is left of the call budget; the attempt as a
whole never runs past the call deadline, however slowly the bytes trickle in. ``write`` is accepted so
that an okhttp transport maps onto these settings; a request is one small write into the socket buffer,
bounded by the call budget only.

Size bounds per response, checked as the bytes arrive so that a misbehaving function server costs flat
memory and little time: the body at most ``payload_max_bytes`` (a longer Content-Length is refused before
any of the body is read); the status line and headers at most MAX_RESPONSE_HEAD_BYTES; chunk framing and
trailers at most as many bytes as the body, and MAX_RESPONSE_HEAD_BYTES more (checked at every read).
Past a bound the connection is closed (never pooled) and the call fails without retries.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import functools
import ssl
import typing
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import httptools

from pystatefun.runtime.health import EndpointHealth
from pystatefun.runtime.retry import DEFAULT_RETRYABLE_STATUS, FUNCTION_ERROR_STATUS, Backoff, RetryPolicy
from pystatefun.wording import plural

__all__ = [
    "DEFAULT_RETRYABLE_STATUS",
    "FunctionUrl",
    "HttpTransport",
    "RemoteCallError",
    "RetryPolicy",
    "TransportSettings",
    "parse_function_url",
]

MEDIA_TYPE = "application/octet-stream"
USER_AGENT = "statefun"  # what the StateFun runtime sends; some function gateways route or log by it
BODY_EXCERPT_BYTES = 2048
MAX_RESPONSE_HEAD_BYTES = 64 * 1024  # status line and headers of a response, as servers bound requests
MIN_ATTEMPT_SECONDS = 0.01  # less budget than this left: no attempt is worth starting (StateFun: 7-13 ms)
MAX_SOCKET_PATH_BYTES = 107  # sockaddr_un.sun_path is 108 bytes on Linux, with the terminating NUL
UNIX_HOST = "localhost"  # Host header (and TLS server name) of a request over a Unix domain socket
MAX_ROUTES = 4096  # function URLs whose parsed form a transport remembers

OnAttempt = typing.Callable[[float, bool], None]
"""Told the latency in seconds and the success of every attempt (the metrics hook)."""


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """What an endpoint's transport block says, in the terms of this client. Defaults: StateFun's async
    transport (spec §2.7), the default of a v2 endpoint.

    ``call`` is the total budget of one call including every retry and backoff; ``connect`` and ``read``
    bound each attempt (``read`` None: the rest of the budget); ``write`` is not enforced separately (see
    the module docstring). ``pool_ttl`` is how long an idle pooled connection is kept (0: no pooling).
    ``client_key_password`` is the password itself, not the file that holds it.
    """

    call: timedelta = timedelta(minutes=2)
    connect: timedelta = timedelta(seconds=20)
    read: timedelta | None = None
    write: timedelta | None = None
    pool_size: int = 1024
    pool_ttl: timedelta = timedelta(seconds=15)
    payload_max_bytes: int = 32 * 1024 * 1024
    trust_cacerts: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    client_key_password: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        for name in ("call", "connect", "read", "write"):
            value = getattr(self, name)
            if value is not None and value <= timedelta(0):
                raise ValueError(f"transport timeout {name} must be positive, got {value}")
        if self.pool_size < 1:
            raise ValueError(f"transport pool_size must be at least 1, got {self.pool_size}")
        if self.pool_ttl < timedelta(0):
            raise ValueError(f"transport pool_ttl must not be negative, got {self.pool_ttl}")
        if self.payload_max_bytes < 1:
            raise ValueError(f"transport payload_max_bytes must be at least 1, got {self.payload_max_bytes}")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("transport client_key needs client_cert: the key alone cannot authenticate")


class RemoteCallError(Exception):
    """A call to a remote function failed: after its retries (``retryable`` True: the last failure could
    have succeeded later, the budget or ``max_attempts`` ran out) or at once (``retryable`` False).

    ``status`` is the HTTP status of the last response (None: no response, e.g. a connection error or
    timeout), ``body`` the start of a non-2xx (or wrongly typed) response body, ``cause`` the exception of
    the last attempt, if any. ``attempts`` is 0 when the call was refused before sending.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        attempts: int,
        status: int | None = None,
        retryable: bool,
        body: str = "",
        cause: BaseException | None = None,
    ):
        super().__init__(message)
        self.url = url
        self.attempts = attempts
        self.status = status
        self.retryable = retryable
        self.body = body
        self.cause = cause


@dataclass(frozen=True, slots=True)
class FunctionUrl:
    """Where a function URL sends a request: ``request_url`` is the plain http(s) URL of the request;
    ``socket`` is the Unix domain socket file of ``http+unix`` / ``https+unix`` URLs (None: TCP)."""

    url: str
    request_url: str
    socket: str | None
    tls: bool


_SCHEMES = {"http": (False, False), "https": (True, False), "http+unix": (False, True), "https+unix": (True, True)}


@functools.lru_cache(maxsize=4096)
def parse_function_url(url: str) -> FunctionUrl:
    """Splits a function URL (an endpoint's ``urlPathTemplate`` with the name filled in).

    ``http+unix:///run/fn/functions.sock/statefun`` is socket ``/run/fn/functions.sock`` and HTTP path
    ``/statefun``: everything up to and including the first path segment ending in ``.sock`` is the socket
    file (StateFun's ``UnixDomainHttpEndpoint``). Raises ValueError saying what is wrong.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"function URL {url!r}: scheme must be one of http, https, http+unix, https+unix")
    tls, unix = _SCHEMES[scheme]
    http_scheme = "https" if tls else "http"
    if not unix:
        if not parts.hostname:
            raise ValueError(f"function URL {url!r} has no host")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError as e:
            raise ValueError(f"function URL {url!r}: {e}") from None
        return FunctionUrl(url, parts._replace(scheme=http_scheme, fragment="").geturl(), None, tls)
    if parts.netloc:
        raise ValueError(
            f"function URL {url!r}: a {scheme} URL has no host; write the socket file as the path, "
            f"e.g. {scheme}:///run/functions.sock/statefun"
        )
    segments = parts.path.split("/")
    for i, segment in enumerate(segments):
        if segment.endswith(".sock"):
            socket = "/".join(segments[: i + 1])
            path = "/" + "/".join(segments[i + 1 :])
            break
    else:
        raise ValueError(
            f"function URL {url!r}: the path of a {scheme} URL must contain the socket file, a segment "
            f"ending in .sock, e.g. {scheme}:///run/functions.sock/statefun"
        )
    if len(socket.encode()) > MAX_SOCKET_PATH_BYTES:
        raise ValueError(
            f"function URL {url!r}: the socket path {socket!r} is longer than the {MAX_SOCKET_PATH_BYTES} bytes "
            "a Unix domain socket address can hold; use a shorter path (or a symlink to its directory)"
        )
    request_url = f"{http_scheme}://{UNIX_HOST}{path}" + (f"?{parts.query}" if parts.query else "")
    return FunctionUrl(url, request_url, socket, tls)


@dataclass(slots=True)
class _Failure:
    """Why one attempt failed."""

    reason: str
    retryable: bool
    status: int | None = None
    body: str = ""
    cause: BaseException | None = None


class HttpTransport:
    """Calls remote functions over HTTP; one per endpoint, shared by all its addresses.

    Connections are pooled per target (host and port, or socket file) and created on first use inside
    the running event loop; ``close`` releases them. ``on_attempt``, if given, is told the latency and
    success of every attempt, retries included (StateFun's per-attempt metrics).
    """

    def __init__(self, settings: TransportSettings, *, on_attempt: OnAttempt | None = None,
                 health: EndpointHealth | None = None):
        self.settings = settings
        self.on_attempt = on_attempt
        self.health = health
        self._ssl = _ssl_context(settings)
        self._pools: dict[tuple, _Pool] = {}
        # per function URL: where it sends and the pool it takes connections from (a URL is split once)
        self._routes: dict[str, tuple[_Target, _Pool]] = {}
        self._closed = False
        self._budget = settings.call.total_seconds()
        self._connect = settings.connect.total_seconds()
        self._read = settings.read.total_seconds() if settings.read is not None else None
        self._ttl = settings.pool_ttl.total_seconds()

    async def call(self, url: str, body: bytes, traceparent: str | None = None) -> bytes:
        """POSTs ``body`` (a serialized ToFunction) to ``url`` and returns the response body (a serialized
        FromFunction, possibly empty). Raises RemoteCallError, or ValueError for a malformed URL.
        ``traceparent`` goes with it as the W3C header of that name (tracing/spans.py)."""
        if self._closed:
            raise RuntimeError("HttpTransport is closed")
        route = self._routes.get(url)
        if route is None:
            route = self._route(url)
        target, pool = route
        limit = self.settings.payload_max_bytes
        if len(body) > limit:
            raise RemoteCallError(
                f"POST {url} refused before sending: the request is {len(body)} bytes, more than the "
                f"transport's payload_max_bytes {limit}; raise payload_max_bytes or send smaller batches "
                "(maxNumBatchRequests) or smaller state",
                url=url,
                attempts=0,
                retryable=False,
            )
        # the end of the head after the Content-Length value
        end = b"\r\n\r\n" if traceparent is None else b"\r\ntraceparent: %s\r\n\r\n" % traceparent.encode("latin-1")
        loop = asyncio.get_running_loop()
        started = attempt_start = loop.time()
        deadline = started + self._budget
        policy = self.settings.retry
        backoff: Backoff | None = None
        attempts = raised = 0
        while True:
            attempts += 1
            outcome = await self._attempt(loop, pool, target, body, end, deadline)
            if self.on_attempt is not None:
                self.on_attempt(loop.time() - attempt_start, outcome.__class__ is not _Failure)
            if outcome.__class__ is not _Failure:
                if self.health is not None:
                    self.health.succeeded(url)
                return outcome  # type: ignore[return-value]
            failure = outcome
            raised += failure.status == FUNCTION_ERROR_STATUS
            error = self._final(url, attempts, raised, failure, loop.time() - started, deadline - loop.time())
            if self.health is not None and failure.status != 404:  # a 404 is an answer: the endpoint is up
                self.health.failed(url, failure.reason, None if error is not None else self._retrying(failure))
            if error is not None:
                raise error
            backoff = backoff or policy.backoff()
            # never sleep past the deadline: a backoff that does not fit is cut so that a last attempt
            # still gets MIN_ATTEMPT_SECONDS, and the whole budget is used (as StateFun's async client does)
            await asyncio.sleep(min(backoff.next(), deadline - loop.time() - MIN_ATTEMPT_SECONDS))
            if deadline - loop.time() <= 0:  # the event loop overslept the last few milliseconds
                raise self._spent(url, attempts, failure, loop.time() - started)
            attempt_start = loop.time()

    def _final(self, url: str, attempts: int, raised: int, failure: _Failure, elapsed: float,
               remaining: float) -> RemoteCallError | None:
        """The error that ends the call after this failed attempt (the ``raised``-th answered HTTP 500 so
        far), or None: it is tried again."""
        policy = self.settings.retry
        if not failure.retryable:
            return self._error(url, attempts, failure, f"failed (not retryable): {failure.reason}")
        bound = policy.function_error_max_attempts
        if failure.status == FUNCTION_ERROR_STATUS and bound is not None and raised >= bound:
            return self._error(
                url, attempts, failure,
                f"failed after {plural(attempts, 'attempt')}, {'each' if raised == attempts else raised} answered "
                f"HTTP 500: the function raised, and a call whose function raises is tried at most {bound} times "
                "(retry function_error_max_attempts); "
                f"last attempt: {failure.reason}",
            )
        if policy.max_attempts is not None and attempts >= policy.max_attempts:
            return self._error(
                url, attempts, failure,
                f"failed after {plural(attempts, 'attempt')} (retry max_attempts) in {elapsed:.3f} s; last attempt: {failure.reason}",
            )
        if remaining < MIN_ATTEMPT_SECONDS:
            return self._spent(url, attempts, failure, elapsed)
        return None

    def _retrying(self, failure: _Failure) -> str:
        """How a call goes on after a failed attempt that is tried again (for the log and /functions)."""
        policy = self.settings.retry
        limits = [f"the call budget of {self._budget:g} s (transport call)"]
        if policy.max_attempts is not None:
            limits.append(f"{policy.max_attempts} attempts (retry max_attempts)")
        if failure.status == FUNCTION_ERROR_STATUS and policy.function_error_max_attempts is not None:
            limits.append(f"{policy.function_error_max_attempts} attempts while the function raises "
                          "(retry function_error_max_attempts)")
        return f"retried with backoff for at most {' or '.join(limits)}, then its address parks"

    async def close(self) -> None:
        """Closes the pooled connections; the transport cannot be used afterwards."""
        self._closed = True
        pools, self._pools = list(self._pools.values()), {}
        self._routes.clear()
        for pool in pools:
            pool.close()

    def _route(self, url: str) -> tuple[_Target, _Pool]:
        """Splits a function URL (ValueError if it is malformed) and finds its pool; remembered for the
        next call to it, for at most MAX_ROUTES URLs (a namespace binding takes any function name)."""
        target = _target(parse_function_url(url), self._ttl == 0)
        pool = self._pools.get(target.key)
        if pool is None:
            pool = self._pools[target.key] = _Pool(self._opener(target), self.settings.pool_size, self._ttl)
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        route = self._routes[url] = (target, pool)
        return route

    def _opener(self, target: _Target) -> typing.Callable[[], typing.Awaitable[_Connection]]:
        limit = self.settings.payload_max_bytes
        context = self._ssl if target.tls else None
        hostname = (target.host if target.socket is None else UNIX_HOST) if target.tls else None

        async def open_connection() -> _Connection:
            loop = asyncio.get_running_loop()
            if target.socket is None:
                _, connection = await loop.create_connection(
                    lambda: _Connection(limit, loop), target.host, target.port, ssl=context, server_hostname=hostname
                )
            else:
                _, connection = await loop.create_unix_connection(
                    lambda: _Connection(limit, loop), target.socket, ssl=context, server_hostname=hostname
                )
            return connection

        return open_connection

    async def _attempt(self, loop: asyncio.AbstractEventLoop, pool: _Pool, target: _Target, body: bytes, end: bytes,
                       deadline: float) -> bytes | _Failure:
        # the loop is handed down, not asked for: asyncio.get_running_loop() makes a getpid system call in
        # Python 3.11, and a call asked for it four times
        now = loop.time()
        remaining = max(deadline - now, MIN_ATTEMPT_SECONDS / 10)
        connect = min(self._connect, remaining)
        read = min(self._read, remaining) if self._read is not None else remaining
        head = target.head + b"%d" % len(body) + end
        fresh = False
        while True:
            try:
                connection, fresh = pool.take_idle(now), False
                if connection is None:  # the timeout only where there is something to wait for
                    async with asyncio.timeout(connect):
                        connection, fresh = await pool.acquire()
            except ssl.SSLCertVerificationError as e:
                # the trust store is fixed for the transport's life: asking again gives the same answer
                return _Failure(
                    f"the server's TLS certificate was rejected ({e.verify_message}); trust its CA with "
                    "trust_cacerts (a PEM file) or fix the certificate",
                    retryable=False, cause=e,
                )
            except TimeoutError as e:
                return _Failure(f"no connection within {connect:g} s (connect timeout)", True, cause=e)
            except OSError as e:
                return _Failure(f"cannot connect: {type(e).__name__}: {e}", True, cause=e)
            try:
                response = await connection.request(head, body, read, deadline)
            except _Oversized as e:
                pool.release(connection, reusable=False)
                # the server's code sends this for every request alike: asking again would only cost the
                # other addresses more time
                return _Failure(f"{e}: the function server is misbehaving", retryable=False, cause=e)
            except _ReadTimeout as e:
                pool.release(connection, reusable=False)
                if e.budget_spent:
                    return _Failure(f"no complete response within the {remaining:.3f} s left of the call budget", True, cause=e)
                return _Failure(f"no response data within {read:g} s (read timeout)", True, cause=e)
            except (OSError, _ProtocolError) as e:
                pool.release(connection, reusable=False)
                if not fresh and not connection.answered:
                    # a pooled connection the server had closed meanwhile: the request never reached it,
                    # so sending it again on a new connection is not a retry
                    continue
                return _Failure(f"{type(e).__name__}: {e}", True, cause=e)
            except BaseException:
                pool.release(connection, reusable=False)  # cancelled mid-request: the connection is unusable
                raise
            pool.release(connection, reusable=response.keep_alive and not target.close)
            return self._outcome(response)

    def _outcome(self, response: _Response) -> bytes | _Failure:
        status = response.status
        if not 200 <= status < 300:
            retryable = status in self.settings.retry.retryable_status
            excerpt = _excerpt(response)
            hint = ""
            if 300 <= status < 400:
                hint = f" (redirects are not followed; use the final URL, Location: {response.headers.get('location')})"
            return _Failure(
                f"HTTP {_status_text(status)}{hint}, body: {excerpt!r}", retryable, status=status, body=excerpt
            )
        content_type = response.headers.get("content-type")
        if content_type != MEDIA_TYPE and (
            content_type is None or content_type.split(";", 1)[0].strip().lower() != MEDIA_TYPE
        ):
            excerpt = _excerpt(response)
            return _Failure(
                f"HTTP {_status_text(status)} with Content-Type {content_type!r}, not {MEDIA_TYPE}: the URL "
                f"does not answer with the StateFun protocol (wrong URL, or a proxy answered), body: {excerpt!r}",
                retryable=False, status=status, body=excerpt,
            )
        if response.too_big:
            return _Failure(
                f"HTTP {_status_text(status)} with a response of more than payload_max_bytes "
                f"({self.settings.payload_max_bytes} bytes)",
                retryable=False, status=status,
            )
        encoding = response.headers.get("content-encoding")
        if encoding is not None and encoding.strip().lower() != "identity":
            # the request has no Accept-Encoding, so servers answer uncompressed; one that does not is refused
            # plainly rather than its bytes handed on as a FromFunction
            return _Failure(
                f"HTTP {_status_text(status)} with Content-Encoding {encoding!r}, which the request did not "
                "accept: a StateFun function answers with uncompressed bytes",
                retryable=False, status=status,
            )
        return bytes(response.body)

    def _spent(self, url: str, attempts: int, failure: _Failure, elapsed: float) -> RemoteCallError:
        return self._error(
            url, attempts, failure,
            f"failed after {plural(attempts, 'attempt')} in {elapsed:.3f} s, the call budget of {self._budget:g} s spent; "
            f"last attempt: {failure.reason}",
        )

    def _error(self, url: str, attempts: int, failure: _Failure, what: str) -> RemoteCallError:
        error = RemoteCallError(
            f"POST {url} {what}",
            url=url, attempts=attempts, status=failure.status, retryable=failure.retryable,
            body=failure.body, cause=failure.cause,
        )
        error.__cause__ = failure.cause
        return error


# -- the HTTP/1.1 client ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """A function URL ready to send to: the pool it uses and the request head up to Content-Length."""

    key: tuple
    host: str
    port: int
    socket: str | None
    tls: bool
    head: bytes
    close: bool  # ask for Connection: close (pool_ttl 0)


def _target(url: FunctionUrl, close: bool) -> _Target:
    parts = urlsplit(url.request_url)
    host = parts.hostname or UNIX_HOST
    port = parts.port or (443 if url.tls else 80)
    authority = parts.netloc.rsplit("@", 1)[-1]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {MEDIA_TYPE}\r\nAccept: {MEDIA_TYPE}\r\n"
        f"User-Agent: {USER_AGENT}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}Content-Length: "
    ).encode("latin-1")
    key = (url.socket, url.tls) if url.socket is not None else (host, port, url.tls)
    return _Target(key, host, port, url.socket, url.tls, head, close)


class _ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response."""


class _Oversized(Exception):
    """The response's bytes that are not body went past their bound (see the module docstring)."""


class _ReadTimeout(Exception):
    def __init__(self, budget_spent: bool):
        super().__init__("the call budget ran out" if budget_spent else "no response data in time")
        self.budget_spent = budget_spent


@dataclass(slots=True)
class _Response:
    status: int
    headers: dict[str, str]
    body: bytearray
    keep_alive: bool
    too_big: bool


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time; httptools parses the responses.

    The read timeout: one timer per connection, not per request. It is moved earlier when a request
    needs it sooner and otherwise left be; when it fires it checks the request in progress (if any) and
    re-arms itself for that request's due time (``_last_data`` moves on as bytes arrive, which costs
    data_received only a clock read)."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop):
        self.limit = limit  # payload_max_bytes: a longer body is not read
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.answered = False  # any byte of the current response arrived
        self._waiter: asyncio.Future | None = None
        self._last_data = 0.0
        self._read = 0.0  # the read timeout of the request in progress...
        self._deadline = 0.0  # ...and the end of its call's budget
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._too_big = False
        self._until_eof = False  # the response has neither Content-Length nor chunking: the body ends at EOF
        self._received = 0  # bytes of the current response (interim ones included)...
        self._body_bytes = 0  # ...and how many of them were body
        self._in_head = True  # the status line and headers are still being read
        self._head_left = MAX_RESPONSE_HEAD_BYTES  # bytes the head may still take

    async def request(self, head: bytes, body: bytes, read: float, deadline: float) -> _Response:
        """Sends one request; the response, or _ReadTimeout, _Oversized, OSError or _ProtocolError."""
        loop = self.loop
        self.answered = False
        if self.closed:  # the server closed it while it was idle or handed over: the write would go nowhere
            raise ConnectionResetError("the server closed the connection")
        self._headers, self._body, self._too_big, self._until_eof = {}, bytearray(), False, False
        self._received, self._body_bytes, self._in_head, self._head_left = 0, 0, True, MAX_RESPONSE_HEAD_BYTES
        self._waiter = waiter = loop.create_future()
        self.transport.writelines((head, body))
        self._last_data = now = loop.time()
        self._read, self._deadline = read, deadline
        due = min(now + read, deadline)
        if due < self._timer_at:
            self._arm(due)
        try:
            return await waiter
        finally:
            self._waiter = None

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = self.loop.call_at(due, self._check_timeout)

    def _check_timeout(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        waiter = self._waiter
        if waiter is None or waiter.done():  # idle: the next request arms it again
            return
        deadline = self._deadline
        due = min(self._last_data + self._read, deadline)
        if due > self.loop.time():
            self._arm(due)
            return
        waiter.set_exception(_ReadTimeout(budget_spent=due >= deadline))
        self.transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection cannot be trusted any more
            self.transport.abort()
            return
        self.answered = True
        self._last_data = self.loop.time()
        self._received += len(data)
        rest: bytes | memoryview = data
        try:
            if self._in_head and len(data) > self._head_left:
                # httptools keeps a header line that is still arriving in memory, growing it by copying, so
                # an endless one would cost unbounded memory and CPU: the parser is given no more of a head
                # than its bound leaves, and a head that has not ended within that is refused. (The bound
                # is shared by the interim 1xx heads and the final one.)
                cut, self._head_left = self._head_left, 0
                view = memoryview(data)  # slices without copying the (up to 256 KiB) read
                self.parser.feed_data(view[:cut])
                if self._in_head:
                    self._oversized(f"the status line and headers of the response passed {MAX_RESPONSE_HEAD_BYTES} bytes")
                    return
                rest = view[cut:]
            elif self._in_head:
                self._head_left -= len(data)
            self.parser.feed_data(rest)
        except httptools.HttpParserError as e:
            self._fail(_ProtocolError(f"the server did not answer with HTTP/1.1: {e}"))
            self.transport.abort()
            return
        # after the head, chunk framing (sizes, extensions) and trailers are not body either, and httptools
        # holds trailers as it holds headers: they may be as many bytes as the body, and the head's bound
        # more, checked at every read
        if self._received - 2 * self._body_bytes > 2 * MAX_RESPONSE_HEAD_BYTES:
            self._oversized(
                f"the response's chunk framing and trailers passed {MAX_RESPONSE_HEAD_BYTES} bytes more than its "
                f"{self._body_bytes} bytes of body"
            )

    def _oversized(self, what: str) -> None:
        self._fail(_Oversized(what))
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, float("inf")
        if exc is None and self._until_eof:
            # httptools cannot be told of the end of the stream: a body delimited by closing (HTTP/1.0,
            # or Connection: close without a length) is complete now
            self._finish(too_big=False)
        self._fail(exc or ConnectionResetError("the server closed the connection before the response was complete"))

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._in_head = False
        headers = self._headers
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            self._finish(too_big=True)
        self._until_eof = not length and "transfer-encoding" not in headers

    def on_body(self, chunk: bytes) -> None:
        self._body_bytes += len(chunk)
        if self._too_big:
            return
        self._body += chunk
        if len(self._body) > self.limit:
            self._finish(too_big=True)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            # an interim response (100 Continue, 103 Early Hints) a server may send unasked: the real one follows
            self._headers, self._body, self._until_eof, self._in_head = {}, bytearray(), False, True
            return
        self._until_eof = False
        if not self._too_big:
            self._finish(too_big=False)

    def _finish(self, too_big: bool) -> None:
        self._too_big = too_big
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        keep_alive = not too_big and self.parser.should_keep_alive()
        waiter.set_result(_Response(self.parser.get_status_code(), self._headers, self._body, keep_alive, too_big))


class _Pool:
    """The connections to one target: idle ones reused newest first while younger than ``ttl`` idle, at
    most ``size`` open. Callers finding them all busy queue up, and each connection (or the slot of one
    that was closed) coming back goes straight to the first of them, never into the idle deque, so a
    call arriving later cannot take it first."""

    def __init__(self, open_connection: typing.Callable[[], typing.Awaitable[_Connection]], size: int, ttl: float):
        self._open_connection = open_connection
        self._size = size
        self._ttl = ttl
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._closed = False

    def take_idle(self, now: float) -> _Connection | None:
        """A pooled connection that is still open and young enough at ``now`` (the loop's time), if there is one."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < self._ttl:
                return connection
            self._discard(connection)
        return None

    async def acquire(self) -> tuple[_Connection, bool]:
        """A connection, and whether it is new: waits while ``size`` are open and none is idle."""
        connection = self.take_idle(asyncio.get_running_loop().time())
        if connection is not None:
            return connection, False
        if self._open < self._size:
            self._open += 1
        else:
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                connection = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():  # handed something it will not use: pass it on
                    handed = waiter.result()
                    if handed is not None:
                        self._hand_over(handed)
                    else:
                        self._free_slot()
                elif waiter in self._waiters:
                    self._waiters.remove(waiter)
                raise
            if connection is not None:
                return connection, False
            # handed the slot of a connection that was closed: open one in its place
        try:
            return await self._open_connection(), True
        except BaseException:
            self._free_slot()
            raise

    def release(self, connection: _Connection, reusable: bool) -> None:
        if reusable and self._ttl > 0 and not connection.closed and not self._closed:
            connection.idle_since = connection.loop.time()
            self._hand_over(connection)
        else:
            self._discard(connection)

    def close(self) -> None:
        """Closes the idle connections now, and those of calls still running when they come back."""
        self._closed = True
        while self._idle:
            self._discard(self._idle.pop())

    def _hand_over(self, connection: _Connection) -> None:
        """A connection free for the next request: to the first waiting caller, else idle."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _discard(self, connection: _Connection) -> None:
        if connection.transport is not None and not connection.closed:
            connection.transport.close()
        self._free_slot()

    def _free_slot(self) -> None:
        """One connection fewer: its slot goes to the first waiting caller (who opens a new one), else
        it is free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._open -= 1


def _excerpt(response: _Response) -> str:
    """The first BODY_EXCERPT_BYTES of a response body, decoded with its declared charset."""
    declared = None
    for parameter in response.headers.get("content-type", "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            declared = value.strip().strip('"')
    return bytes(response.body[:BODY_EXCERPT_BYTES]).decode(_charset(declared), errors="replace")


def _charset(declared: str | None) -> str:
    """The response's declared charset if Python knows it, else UTF-8 (what function frameworks send)."""
    if declared:
        try:
            return codecs.lookup(declared).name
        except LookupError:
            pass
    return "utf-8"


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _ssl_context(settings: TransportSettings) -> ssl.SSLContext:
    """The TLS settings of every https connection of a transport, built once: the system trust store, or
    only ``trust_cacerts`` when given; a client certificate for mTLS."""
    try:
        context = ssl.create_default_context(cafile=str(settings.trust_cacerts) if settings.trust_cacerts else None)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"transport trust_cacerts {settings.trust_cacerts}: cannot load it as PEM CA certificates: {e}") from e
    if settings.client_cert is not None:
        try:
            context.load_cert_chain(
                settings.client_cert,
                settings.client_key,
                password=settings.client_key_password,
            )
        except (OSError, ssl.SSLError) as e:
            raise ValueError(
                f"transport client_cert {settings.client_cert} / client_key {settings.client_key}: cannot load "
                f"them (PEM certificate, PEM key; is client_key_password right?): {e}"
            ) from e
    return context
