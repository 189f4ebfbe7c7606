"""The admin API's routes, as an aiohttp application over one Runtime."""

from __future__ import annotations

import time

from aiohttp import web

from pystatefun.runtime.processor import Runtime


class AdminApi:
    """``GET /health``: 200 with the runtime's vital signs while it processes, 503 once it stops."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.started = time.time()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        return app

    async def health(self, request: web.Request) -> web.Response:
        runtime = self.runtime
        body = {
            "status": "ok" if runtime.running else "stopping",
            "uptime_seconds": round(time.time() - self.started, 3),
            "partitions": runtime.partitions,
            "epochs_committed": runtime.commits,
            "parked_addresses": sum(
                1 for p in runtime.processors.values() for m in p.mailboxes.values() if m.parked is not None
            ),
        }
        return web.json_response(body, status=200 if runtime.running else 503)
