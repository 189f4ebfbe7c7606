"""The admin API's routes, as an aiohttp application over one Runtime and its store."""

from __future__ import annotations

import time
import typing

from aiohttp import web

from pystatefun.runtime.envelope import address
from pystatefun.runtime.processor import Runtime

MAX_PAGE = 1000


class DeadLetterStore(typing.Protocol):
    def dead_letters(self, after: int = 0, limit: int = 100) -> list[dict[str, typing.Any]]: ...


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


class AdminApi:
    """``GET /health``; ``GET /parked`` and ``POST /parked/{ns}/{type}/{id}/resume`` (or ``/skip``);
    ``GET /dead-letters?after=SEQ&limit=N``."""

    def __init__(self, runtime: Runtime, store: DeadLetterStore):
        self.runtime = runtime
        self.store = store
        self.started = time.time()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/parked", self.parked)
        app.router.add_post("/parked/{namespace}/{type}/{id}/{action}", self.resume)
        app.router.add_get("/dead-letters", self.dead_letters)
        return app

    async def health(self, request: web.Request) -> web.Response:
        runtime = self.runtime
        body = {
            "status": "ok" if runtime.running else "stopping",
            "uptime_seconds": round(time.time() - self.started, 3),
            "partitions": runtime.partitions,
            "epochs_committed": runtime.commits,
            "parked_addresses": len(runtime.parked()),
        }
        return web.json_response(body, status=200 if runtime.running else 503)

    async def parked(self, request: web.Request) -> web.Response:
        return web.json_response([
            {"address": f"{m.key[0]}/{m.key[1]}", "reason": m.parked,
             "waiting_messages": len(m.backlog) + m.spilled + len(m.overflow)}
            for m in self.runtime.parked()
        ])

    async def resume(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ("resume", "skip"):
            return _error(404, f"unknown action {action!r}: POST .../resume (retry the failed message) or .../skip (drop it to the dead letters)")
        typename = f"{request.match_info['namespace']}/{request.match_info['type']}"
        target = address(typename, request.match_info["id"])
        if not self.runtime.resume(target, skip=action == "skip"):
            return _error(404, f"{typename}/{target.id} is not parked")
        self.runtime.request_commit()
        await self.runtime.epoch.done  # answered once the resume is durable
        return web.json_response({"address": f"{typename}/{target.id}", "resumed": True, "skipped": action == "skip"})

    async def dead_letters(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _error(400, "after and limit must be integers")
        if not 1 <= limit <= MAX_PAGE:
            return _error(400, f"limit must be between 1 and {MAX_PAGE}")
        return web.json_response(self.store.dead_letters(after, limit))
