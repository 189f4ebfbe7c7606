"""The admin API's listener: aiohttp's server with its own cap on open connections and short idle
timeouts, so that the admin API stays reachable (for probes, Prometheus and an operator) while the
data plane's listeners are saturated, and so that its clients cannot take the process's file
descriptors. aiohttp has no connection cap of its own: the site below counts the connections its
protocol factory hands out and answers those beyond the cap as the data plane's listeners do (a 503 at
once and a log line now and then: io/http_server.py ConnectionCap)."""

from __future__ import annotations

import asyncio
import typing

from aiohttp import web

from pystatefun.io.http_server import ConnectionCap

MAX_CONNECTIONS = 128
KEEPALIVE_SECONDS = 15.0  # an idle keep-alive connection is closed after this
MAX_LINE_BYTES = 8190  # request line and each header line (aiohttp's own defaults, stated here)
MAX_FIELD_BYTES = 8190
SHUTDOWN_SECONDS = 5.0


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted while it is open."""

    def __init__(self, inner: asyncio.Protocol, site: CappedSite):
        self.inner = inner
        self.site = site

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.open -= 1
        self.inner.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """A connection beyond the cap: refused by the site's ConnectionCap."""

    def __init__(self, cap: ConnectionCap):
        self.cap = cap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.cap.refuse(transport)


class CappedSite(web.BaseSite):
    """A TCP site that keeps at most ``max_connections`` connections open."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, max_connections: int = MAX_CONNECTIONS):
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        super().__init__(runner)
        self._host = host
        self._port = port
        self.max_connections = max_connections
        self.open = 0
        self.cap = ConnectionCap("admin API", max_connections, f"the admin API has {max_connections} connections "
                                 "open, the most it keeps: close idle ones, or retry")

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = typing.cast(web.Server, self._runner.server)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: self._protocol(server), self._host, self._port)
        self.cap.address = f"{self._host}:{self._port}"

    async def stop(self) -> None:
        self.cap.close()
        await super().stop()

    def _protocol(self, server: web.Server) -> asyncio.Protocol:
        if self.open >= self.max_connections:
            return _Refused(self.cap)
        self.open += 1
        return _Counted(server(), self)


async def serve(app: web.Application, host: str, port: int, max_connections: int = MAX_CONNECTIONS
                ) -> tuple[web.AppRunner, CappedSite]:
    """Starts serving ``app``; stop it with ``runner.cleanup()``."""
    # handler_cancellation: a handler whose client went away is cancelled instead of running on
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE_SECONDS, max_line_size=MAX_LINE_BYTES,
                           max_field_size=MAX_FIELD_BYTES, handler_cancellation=True,
                           shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    site = CappedSite(runner, host, port, max_connections)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site
