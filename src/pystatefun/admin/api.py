"""The admin API's routes, as an aiohttp application over one Runtime and its store."""

from __future__ import annotations

import asyncio
import time
import typing

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pystatefun.admin.values import StateValueError, describe, encode
from pystatefun.runtime.envelope import address
from pystatefun.runtime.processor import Runtime
from pystatefun.wire.request_reply_pb2 import TypedValue

MAX_PAGE = 1000


class DeadLetterStore(typing.Protocol):
    def dead_letters(self, after: int = 0, limit: int = 100) -> list[dict[str, typing.Any]]: ...


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


class AdminApi:
    """``GET /health``; ``GET /metrics`` (Prometheus); ``GET/PUT/DELETE /state/{ns}/{type}/{id}``; ``GET /parked`` and
    ``POST /parked/{ns}/{type}/{id}/resume`` (or ``/skip``); ``GET /dead-letters?after=SEQ&limit=N``."""

    def __init__(self, runtime: Runtime, store: DeadLetterStore, registry: CollectorRegistry):
        self.runtime = runtime
        self.store = store
        self.registry = registry
        self.started = time.time()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_route("*", "/state/{namespace}/{type}/{id}", self.state)
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

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def state(self, request: web.Request) -> web.Response:
        """GET: the address's states. PUT ``{"name": {"value": ...} | {"value_base64": ...}, ...}``:
        writes them, checked against the registered specs. DELETE (``?name=N`` for one): removes them.
        Writes answer once committed; a batch in flight for the address wins for names it writes."""
        if request.method not in ("GET", "PUT", "DELETE"):
            return _error(405, f"{request.method} is not supported here: GET, PUT or DELETE")
        typename = f"{request.match_info['namespace']}/{request.match_info['type']}"
        try:
            target = address(typename, request.match_info["id"])
        except ValueError as e:
            return _error(400, str(e))
        specs = self.runtime.specs_of(typename)
        if specs is None:
            return _error(404, f"no function type {typename!r} is bound in the module")
        if request.method == "GET":
            return web.json_response(self._shown(target))
        if request.method == "DELETE":
            names = [request.query["name"]] if "name" in request.query else list(self.runtime.state_of(target))
            changes: dict[str, TypedValue | None] = {name: None for name in names}
        else:
            try:
                given = await request.json()
            except ValueError:
                return _error(400, "the body must be a JSON object {state name: {\"value\": ...} or {\"value_base64\": ...}}")
            if not isinstance(given, dict) or not given:
                return _error(400, "the body must be a non-empty JSON object {state name: {\"value\": ...}}")
            changes = {}
            for name, entry in given.items():
                spec = specs.get(name)
                if spec is None:
                    known = ", ".join(sorted(specs)) or "none registered yet (a remote function registers its specs on its first call)"
                    return _error(400, f"{typename} has no state {name!r}; its states: {known}")
                try:
                    changes[name] = TypedValue(typename=spec.type_typename, has_value=True,
                                               value=encode(name, spec.type_typename, entry))
                except StateValueError as e:
                    return _error(400, str(e))
        epoch = self.runtime.write_address_state(target, changes)
        self.runtime.request_commit()
        await asyncio.shield(epoch.done)
        return web.json_response(self._shown(target))

    def _shown(self, target) -> dict[str, typing.Any]:
        states = {}
        for name, stored in sorted(self.runtime.state_of(target).items()):
            shown = describe(stored.value.typename, stored.value.value)
            shown["expires_at_ms"] = stored.expire_at
            states[name] = shown
        return {"address": f"{target.typename}/{target.id}", "state": states}

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
