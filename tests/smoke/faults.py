"""Faults: the proxy between the runtime and the function server (503s and answers delayed past the
endpoint's read timeout), and the schedule that kills processes at random moments."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import typing
from collections import Counter

import aiohttp
from aiohttp import web
from e2e.processes import free_port


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of the function server (``target()`` gives its current port).

    Of the calls, a fraction ``p503`` is answered with 503, as a gateway does when it fails for a moment
    (half of them without asking the function, half after it answered, so the function did the work and
    the runtime must retry it; not 500, which says the function raised and parks its address after
    ``retry.function_error_max_attempts``), and a fraction
    ``pdelay`` is answered only after ``delay`` seconds (past the runtime's read timeout: it gives up and
    calls again). A function server that is down gives 502 (retried by the runtime as well)."""

    def __init__(self, target: typing.Callable[[], int], p503: float, pdelay: float, delay: float, seed: int):
        self.target, self.p503, self.pdelay, self.delay = target, p503, pdelay, delay
        self.rng = random.Random(seed)
        self.port = free_port()
        self.counts: Counter = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.counts["calls"] += 1
        draw = self.rng.random()
        if draw < self.p503 / 2:
            self.counts["503"] += 1
            return web.Response(status=503, text="fault proxy: injected 503")
        try:
            async with self._session.post(f"http://127.0.0.1:{self.target()}{request.path_qs}", data=body,
                                          headers={"Content-Type": request.headers.get("Content-Type", "")}) as r:
                status, payload, content_type = r.status, await r.read(), r.headers.get("Content-Type")
        except (TimeoutError, aiohttp.ClientError) as e:
            self.counts["502"] += 1
            return web.Response(status=502, text=f"fault proxy: function server unreachable: {e!r}")
        if draw < self.p503:
            self.counts["503"] += 1
            return web.Response(status=503, text="fault proxy: injected 503 after the function answered")
        if draw < self.p503 + self.pdelay:
            self.counts["delays"] += 1
            await asyncio.sleep(self.delay)
        response = web.Response(status=status, body=payload)
        if content_type:
            response.headers["Content-Type"] = content_type
        return response

    def stop(self) -> None:
        async def _stop():
            if self._runner:
                await self._runner.cleanup()
            if self._session:
                await self._session.close()
        with contextlib.suppress(Exception):  # stopping anyway
            asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class KillSchedule:
    """Kills at random moments: ``count`` points drawn uniformly over the sending phase (fractions of the
    messages accepted), each running ``action`` (which kills and restarts something) once progress passes
    it, after a random extra pause of up to ``jitter`` seconds so that kills land at any point of an epoch."""

    def __init__(self, name: str, count: int, rng: random.Random, action: typing.Callable[[], str],
                 jitter: float = 0.5):
        self.name, self.action, self.jitter, self.rng = name, action, jitter, rng
        self.points = sorted(rng.uniform(0.05, 0.95) for _ in range(count))
        self.done = 0

    def poll(self, progress: float, log: typing.Callable[[str], None]) -> None:
        while self.done < len(self.points) and progress >= self.points[self.done]:
            time.sleep(self.rng.uniform(0, self.jitter))
            self.done += 1
            what = self.action()
            log(f"fault: {self.name} {self.done}/{len(self.points)}: {what}")
