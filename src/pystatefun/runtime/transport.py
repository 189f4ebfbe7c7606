"""The HTTP client that calls remote functions with the StateFun request-reply protocol (spec §2.2, §2.7).

One ``HttpTransport`` per endpoint: it POSTs a serialized ``ToFunction`` and returns the ``FromFunction``
bytes, over pooled HTTP/1.1 keep-alive connections (TCP, or a Unix domain socket for ``http+unix`` /
``https+unix`` URLs), retrying what may succeed when asked again (``retry.RetryPolicy``) inside one total
call budget, and failing with a ``RemoteCallError`` that says what the function answered.

Timeouts map onto aiohttp per attempt: ``connect`` bounds establishing a new connection (``sock_connect``);
``read`` bounds each wait for response bytes once the request is written (``sock_read``), capped by what is
left of the call budget; the attempt as a whole never runs past the call deadline. aiohttp has no write
timeout: ``write`` is accepted so that an okhttp transport maps onto these settings, and the request write
is bounded by the call budget only.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import ssl
import typing
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from pystatefun.runtime.retry import DEFAULT_RETRYABLE_STATUS, Backoff, RetryPolicy

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
MIN_ATTEMPT_SECONDS = 0.01  # less budget than this left: no attempt is worth starting (StateFun: 7-13 ms)
MAX_SOCKET_PATH_BYTES = 107  # sockaddr_un.sun_path is 108 bytes on Linux, with the terminating NUL
UNIX_HOST = "localhost"  # Host header (and TLS server name) of a request over a Unix domain socket

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
    """Where a function URL sends a request: ``request_url`` goes to aiohttp; ``socket`` is the Unix
    domain socket file of ``http+unix`` / ``https+unix`` URLs (None: TCP)."""

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

    Connections are pooled per target (one TCP pool, one pool per Unix socket file) and created on first
    use inside the running event loop; ``close`` releases them. ``on_attempt``, if given, is told the
    latency and success of every attempt, retries included (StateFun's per-attempt metrics).
    """

    def __init__(self, settings: TransportSettings, *, on_attempt: OnAttempt | None = None):
        self.settings = settings
        self.on_attempt = on_attempt
        self._ssl = _ssl_context(settings)
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}  # None: TCP, else the socket path
        self._closed = False
        self._budget = settings.call.total_seconds()
        self._connect = settings.connect.total_seconds()
        self._read = settings.read.total_seconds() if settings.read is not None else None
        self._headers = {
            "Content-Type": MEDIA_TYPE,
            "Accept": MEDIA_TYPE,
            "User-Agent": USER_AGENT,
        }

    async def call(self, url: str, body: bytes) -> bytes:
        """POSTs ``body`` (a serialized ToFunction) to ``url`` and returns the response body (a serialized
        FromFunction, possibly empty). Raises RemoteCallError, or ValueError for a malformed URL."""
        if self._closed:
            raise RuntimeError("HttpTransport is closed")
        target = parse_function_url(url)
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
        session = self._session(target)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._budget
        policy = self.settings.retry
        backoff: Backoff | None = None
        attempts = 0
        while True:
            attempts += 1
            attempt_start = loop.time()
            outcome = await self._attempt(session, target, body, deadline)
            if self.on_attempt is not None:
                self.on_attempt(loop.time() - attempt_start, not isinstance(outcome, _Failure))
            if not isinstance(outcome, _Failure):
                return outcome
            failure = outcome
            if not failure.retryable:
                raise self._error(url, attempts, failure, f"failed (not retryable): {failure.reason}")
            if policy.max_attempts is not None and attempts >= policy.max_attempts:
                raise self._error(
                    url, attempts, failure,
                    f"failed after {_attempts(attempts)} (retry max_attempts) in {loop.time() - started:.3f} s; "
                    f"last attempt: {failure.reason}",
                )
            remaining = deadline - loop.time()
            if remaining < MIN_ATTEMPT_SECONDS:
                raise self._spent(url, attempts, failure, loop.time() - started)
            backoff = backoff or policy.backoff()
            # never sleep past the deadline: a backoff that does not fit is cut so that a last attempt
            # still gets MIN_ATTEMPT_SECONDS, and the whole budget is used (as StateFun's async client does)
            await asyncio.sleep(min(backoff.next(), remaining - MIN_ATTEMPT_SECONDS))
            if deadline - loop.time() <= 0:  # the event loop overslept the last few milliseconds
                raise self._spent(url, attempts, failure, loop.time() - started)

    async def close(self) -> None:
        """Closes the pooled connections; the transport cannot be used afterwards."""
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    def _session(self, target: FunctionUrl) -> aiohttp.ClientSession:
        session = self._sessions.get(target.socket)
        if session is None:
            session = aiohttp.ClientSession(
                connector=self._connector(target.socket),
                cookie_jar=aiohttp.DummyCookieJar(),  # calls are independent: never carry cookies between them
                auto_decompress=True,
            )
            self._sessions[target.socket] = session
        return session

    def _connector(self, socket: str | None) -> aiohttp.BaseConnector:
        ttl = self.settings.pool_ttl.total_seconds()
        pooling: dict[str, typing.Any] = {"force_close": True} if ttl == 0 else {"keepalive_timeout": ttl}
        if socket is None:
            return aiohttp.TCPConnector(limit=self.settings.pool_size, ssl=self._ssl, **pooling)
        return _UnixConnector(socket, self._ssl, limit=self.settings.pool_size, **pooling)

    async def _attempt(
        self, session: aiohttp.ClientSession, target: FunctionUrl, body: bytes, deadline: float
    ) -> bytes | _Failure:
        remaining = max(deadline - asyncio.get_running_loop().time(), MIN_ATTEMPT_SECONDS / 10)
        read = min(self._read, remaining) if self._read is not None else remaining
        timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=min(self._connect, remaining), sock_read=read)
        try:
            async with asyncio.timeout_at(deadline):
                async with session.post(
                    target.request_url, data=body, headers=self._headers, timeout=timeout, allow_redirects=False
                ) as response:
                    return await self._response(response)
        except aiohttp.ClientConnectorCertificateError as e:
            # the trust store is fixed for the transport's life: asking again gives the same answer
            return _Failure(
                f"the server's TLS certificate was rejected ({e.certificate_error}); trust its CA with "
                "trust_cacerts (a PEM file) or fix the certificate",
                retryable=False, cause=e,
            )
        except aiohttp.InvalidURL as e:
            return _Failure(f"aiohttp cannot send to this URL: {e}", retryable=False, cause=e)
        except aiohttp.ConnectionTimeoutError as e:
            return _Failure(f"no connection within {min(self._connect, remaining):g} s (connect timeout)", True, cause=e)
        except aiohttp.SocketTimeoutError as e:
            return _Failure(f"no response data within {read:g} s (read timeout)", True, cause=e)
        except TimeoutError as e:
            return _Failure(f"no complete response within the {remaining:.3f} s left of the call budget", True, cause=e)
        except aiohttp.ClientError as e:
            return _Failure(f"{type(e).__name__}: {e}", True, cause=e)
        except OSError as e:  # a socket error aiohttp did not wrap
            return _Failure(f"{type(e).__name__}: {e}", True, cause=e)

    async def _response(self, response: aiohttp.ClientResponse) -> bytes | _Failure:
        status = response.status
        if not 200 <= status < 300:
            retryable = status in self.settings.retry.retryable_status
            excerpt = await _excerpt(response)
            hint = ""
            if 300 <= status < 400:
                hint = f" (redirects are not followed; use the final URL, Location: {response.headers.get('Location')})"
            return _Failure(
                f"HTTP {_status_text(status)}{hint}, body: {excerpt!r}", retryable, status=status, body=excerpt
            )
        content_type = response.headers.get("Content-Type")
        if content_type is None or content_type.split(";", 1)[0].strip().lower() != MEDIA_TYPE:
            excerpt = await _excerpt(response)
            return _Failure(
                f"HTTP {_status_text(status)} with Content-Type {content_type!r}, not {MEDIA_TYPE}: the URL "
                f"does not answer with the StateFun protocol (wrong URL, or a proxy answered), body: {excerpt!r}",
                retryable=False, status=status, body=excerpt,
            )
        limit = self.settings.payload_max_bytes
        too_big = _Failure(
            f"HTTP {_status_text(status)} with a response of more than payload_max_bytes ({limit} bytes)",
            retryable=False, status=status,
        )
        if response.content_length is not None and response.content_length > limit:
            return too_big
        data = bytearray()
        async for chunk in response.content.iter_any():
            data += chunk
            if len(data) > limit:
                return too_big
        return bytes(data)

    def _spent(self, url: str, attempts: int, failure: _Failure, elapsed: float) -> RemoteCallError:
        return self._error(
            url, attempts, failure,
            f"failed after {_attempts(attempts)} in {elapsed:.3f} s, the call budget of {self._budget:g} s spent; "
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


async def _excerpt(response: aiohttp.ClientResponse) -> str:
    """The first BODY_EXCERPT_BYTES of a response body, decoded; a body that fits is read completely, so
    the connection goes back to the pool (else it is closed on release)."""
    data = bytearray()
    try:
        while len(data) < BODY_EXCERPT_BYTES:
            chunk = await response.content.read(BODY_EXCERPT_BYTES - len(data))
            if not chunk:
                break
            data += chunk
    except (aiohttp.ClientError, OSError):
        pass  # the status already says what failed; a broken body only shortens the excerpt
    return data.decode(_charset(response.charset), errors="replace")


def _charset(declared: str | None) -> str:
    """The response's declared charset if Python knows it, else UTF-8 (what function frameworks send)."""
    if declared:
        try:
            return codecs.lookup(declared).name
        except LookupError:
            pass
    return "utf-8"


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


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


class _UnixConnector(aiohttp.UnixConnector):
    """aiohttp's UnixConnector, plus TLS for ``https+unix`` (aiohttp's own never wraps the socket)."""

    def __init__(self, path: str, ssl_context: ssl.SSLContext, **kwargs: typing.Any):
        super().__init__(path, **kwargs)
        self._ssl_context = ssl_context

    async def _create_connection(self, req: typing.Any, traces: typing.Any, timeout: aiohttp.ClientTimeout) -> typing.Any:
        if not req.is_ssl():
            return await super()._create_connection(req, traces, timeout)
        try:
            async with asyncio.timeout(timeout.sock_connect):
                _, protocol = await self._loop.create_unix_connection(
                    self._factory, self.path, ssl=self._ssl_context, server_hostname=req.host
                )
        except ssl.SSLCertVerificationError as e:
            raise aiohttp.ClientConnectorCertificateError(req.connection_key, e) from e
        except TimeoutError:
            raise
        except OSError as e:
            raise aiohttp.UnixClientConnectorError(self.path, req.connection_key, e) from e
        return protocol
