"""The admin API's routes, as an aiohttp application over one Runtime and its store."""

from __future__ import annotations

import asyncio
import base64
import hmac
import ipaddress
import os
import time
import typing
from urllib.parse import quote, urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pystatefun.admin import console
from pystatefun.admin.console import CONSOLE_ROOT
from pystatefun.admin.observation import Deployment, Observation
from pystatefun.admin.openapi import OPENAPI
from pystatefun.admin.values import StateValueError, describe, encode
from pystatefun.io.http_server import Response
from pystatefun.runtime.envelope import address
from pystatefun.runtime.epoch import DeadLetter
from pystatefun.runtime.processor import Runtime
from pystatefun.savepoints.format import SavepointError
from pystatefun.wire.request_reply_pb2 import TypedValue

MAX_PAGE = 1000
DEFAULT_PAGE = 100
# readable without the token: they show no state and change nothing, so probes and Prometheus need no
# secret (docs/runtime.md, "Security model of the admin API")
PUBLIC_ROUTES = frozenset({"/health", "/metrics"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
# the browser's Sec-Fetch-Site values of requests a page of another origin makes
CROSS_ORIGIN_FETCH = frozenset({"cross-site", "same-site"})


class AdminExposedError(ValueError):
    """The admin API would listen beyond this machine without a token."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name the admin API binds to) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


class PeerError(RuntimeError):
    """Another worker did not answer its part of a listing."""


class Peers(typing.Protocol):
    """The other workers of a distributed application (backends/kafka/forwarding.py)."""

    def middleware(self, server: str, needs_owner: typing.Callable[[web.Request], bool]) -> typing.Any: ...

    async def gather(self, request: web.Request) -> list[typing.Any]: ...

    def asked_by_peer(self, request: web.Request) -> bool: ...

    async def to_owner_of(self, id: str, request: web.Request,
                          here: typing.Callable[[], typing.Awaitable[web.StreamResponse]]) -> web.StreamResponse: ...


class Ingress(typing.Protocol):
    """How messages from outside are taken (io/playground.py PlaygroundIngress): the admin API's
    ``POST /messages`` and dead-letter replays go through it, so they are accepted as the ingress accepts."""

    async def send(self, function_type: str, id: str, content_type: str, body: bytes, wait_for: str | None,
                   key: str | None) -> Response: ...

    async def replay(self, seq: int, letter: DeadLetter) -> Response | bool: ...


class AdminStore(typing.Protocol):
    def dead_letters(self, after: int = 0, limit: int = 100) -> list[dict[str, typing.Any]]: ...

    def dead_letter(self, seq: int) -> DeadLetter | None: ...

    def addresses(self, typename: str, after: str = "", limit: int = 100) -> list[str]: ...


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


class AdminApi:
    """Every route is described in admin/openapi.py (served at ``/openapi.json``)."""

    def __init__(self, runtime: Runtime, store: AdminStore, registry: CollectorRegistry,
                 functions: typing.Callable[[], list[dict[str, typing.Any]]], token: str | None = None,
                 io_status: typing.Callable[[], dict[str, typing.Any]] = dict, peers: Peers | None = None, *,
                 host: str = "127.0.0.1", port: int, ingress: Ingress, deployment: Deployment,
                 savepoints: typing.Callable[[str, bool], typing.Awaitable[dict[str, typing.Any]]] | None = None):
        """``host`` and ``port``: where the API is served. Bound beyond loopback it must have a ``token``
        (AdminExposedError otherwise); on loopback it answers only requests whose Host names loopback
        and this port, which is what keeps a web page (DNS rebinding) away from it."""
        if not token and not is_loopback(host):
            raise AdminExposedError(
                f"the admin API on {host}:{port} would let anyone who can reach that address read and change "
                "state: give it a token with --admin-token TOKEN (or $PYSTATEFUN_ADMIN_TOKEN), or serve it on "
                "--admin-host 127.0.0.1"
            )
        self.loopback_only = is_loopback(host)
        self.hosts = frozenset(f"{name}:{port}" for name in LOOPBACK_NAMES)
        self.runtime = runtime
        self.store = store
        self.registry = registry
        self.functions = functions
        self.token = token
        self.io_status = io_status  # the ingresses' and egresses' own health (Kafka), merged into /health
        # on the Kafka backend: per-address routes go to the address's owner, listings cover every worker
        self.peers = peers
        # takes a savepoint (path, stop) and gives its manifest; None on the Kafka backend
        self.savepoints = savepoints
        self.ingress = ingress  # takes the messages sent through the API (POST /messages, dead-letter replays)
        self.started = time.time()
        # the console's overview, function graph and function details
        self.observation = Observation(runtime, store, deployment, functions, self.started)

    def app(self) -> web.Application:
        middlewares = [self._same_origin, self._authorize]
        if self.peers is not None:
            middlewares.append(self.peers.middleware("admin", lambda request: True))
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/", self.index)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/functions", self.list_functions)
        app.router.add_get("/functions/{namespace}/{type}", self.function)
        app.router.add_get("/overview", self.overview)
        app.router.add_get("/graph", self.graph)
        app.router.add_get("/addresses/{namespace}/{type}", self.addresses)
        app.router.add_route("*", "/state/{namespace}/{type}/{id}", self.state)
        app.router.add_get("/delayed/{namespace}/{type}/{id}", self.delayed)
        app.router.add_delete("/delayed/{namespace}/{type}/{id}/{timer_id}", self.cancel_delayed)
        app.router.add_get("/parked", self.parked)
        app.router.add_post("/parked/{namespace}/{type}/{id}/{action}", self.resume)
        app.router.add_get("/dead-letters", self.dead_letters)
        app.router.add_post("/dead-letters/{seq}/replay", self.replay_dead_letter)
        app.router.add_post("/messages/{namespace}/{type}/{id}", self.send_message)
        app.router.add_post("/savepoints", self.savepoint)
        console.add_routes(app)
        return app

    @web.middleware
    async def _same_origin(self, request: web.Request, handler: typing.Callable) -> web.StreamResponse:
        """Refuses what a web page could send: a request under a foreign Host (a DNS name of the page's
        that resolves to this machine) and a request from a page of another origin."""
        hosts = request.headers.getall("Host", [])
        if len(hosts) != 1:
            return _error(400, f"a request needs exactly one Host header, this one has {len(hosts)}")
        host = hosts[0].lower()
        if self.loopback_only and host not in self.hosts:
            return _error(421, f"this admin API answers only requests for {', '.join(sorted(self.hosts))}, not "
                               f"{hosts[0]!r}: call it at one of those addresses (to serve it on another interface, "
                               "start it with --admin-host and --admin-token)")
        origin = request.headers.get("Origin")
        if origin is not None and _origin_host(origin) != host:
            return _error(403, f"cross-origin requests are refused: a page of {origin} cannot call the admin API "
                               "(use the CLI or curl)")
        if request.headers.get("Sec-Fetch-Site", "").lower() in CROSS_ORIGIN_FETCH:
            return _error(403, "cross-origin requests are refused: a page of another site cannot call the admin API "
                               "(use the CLI or curl)")
        return await handler(request)

    @web.middleware
    async def _authorize(self, request: web.Request, handler: typing.Callable) -> web.StreamResponse:
        """With a token, every route but the public ones needs ``Authorization: Bearer <token>``, or, from
        a browser, HTTP Basic with the token as the password (any user name): the browser asks for it
        once (the console's 401 says ``WWW-Authenticate: Basic``) and sends it in that header with every
        request of the console's origin, so the token is never in a cookie or a URL."""
        if self.token is not None and request.path not in PUBLIC_ROUTES:
            if not self._token_given(request.headers.get("Authorization", "")):
                response = _error(401, "this admin API needs 'Authorization: Bearer <token>' (the token given to "
                                       "--admin-token); in a browser, the token as the password")
                # a 401 names its scheme (RFC 9110): the console's pages ask a browser for Basic (it prompts
                # once); the API's routes for Bearer, which no browser prompts for
                console_page = request.path == CONSOLE_ROOT or request.path.startswith(CONSOLE_ROOT + "/")
                response.headers["WWW-Authenticate"] = ('Basic realm="pystatefun admin", charset="UTF-8"' if console_page
                                                        else 'Bearer realm="pystatefun admin"')
                return response
        return await handler(request)

    def _token_given(self, authorization: str) -> bool:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            try:
                credentials = base64.b64decode(credentials, validate=True).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                return False
        elif scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.encode(), self.token.encode())

    async def index(self, request: web.Request) -> web.Response:
        """What a user who opens the API's address finds: its routes, from the OpenAPI document (so the
        two cannot drift), and where the full description is."""
        routes = [{"method": method.upper(), "path": path, "summary": operation.get("summary", "")}
                  for path, operations in OPENAPI["paths"].items()
                  for method, operation in operations.items() if isinstance(operation, dict)]
        return web.json_response({"name": "pystatefun admin API", "openapi": "/openapi.json", "routes": routes})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def list_functions(self, request: web.Request) -> web.Response:
        return web.json_response(self.functions())

    async def overview(self, request: web.Request) -> web.Response:
        """Workers, partitions, epochs and commit latency, ingress and egress rates, lag, parked addresses
        and dead letters (admin/observation.py); on the Kafka backend over every worker."""
        observation = self.observation
        parts = await self._with_workers(request, await observation.overview_part())
        return parts if isinstance(parts, web.Response) else web.json_response(await observation.overview(parts))

    async def graph(self, request: web.Request) -> web.Response:
        """The function graph: function types, ingresses and egresses, and the message flows between them."""
        parts = await self._with_workers(request, self.observation.graph_part())
        return parts if isinstance(parts, web.Response) else web.json_response(self.observation.graph(parts))

    async def function(self, request: web.Request) -> web.Response:
        """One function type: its endpoint and health, calls, failures, latency, batch sizes, addresses."""
        typename = f"{request.match_info['namespace']}/{request.match_info['type']}"
        part = await self.observation.function_part(typename)
        if part is None:
            return _error(404, f"no function type {typename!r} is bound in the module (GET /functions lists them)")
        parts = await self._with_workers(request, part)
        return parts if isinstance(parts, web.Response) else web.json_response(self.observation.function(parts))

    async def _with_workers(self, request: web.Request, part: typing.Any) -> list[typing.Any] | web.Response:
        """This process's part and, on the Kafka backend, every other worker's; asked by another worker, the
        answer is this worker's own part as it is (the asking worker merges)."""
        if self.peers is None:
            return [part]
        if self.peers.asked_by_peer(request):
            return web.json_response(part)
        others = await self._peer_parts(request)
        return others if isinstance(others, web.Response) else [part, *others]

    async def addresses(self, request: web.Request) -> web.Response:
        """The ids of a function type with committed state: ``?after=ID&limit=N`` pages through them."""
        typename = f"{request.match_info['namespace']}/{request.match_info['type']}"
        if self.runtime.specs_of(typename) is None:
            return _error(404, f"no function type {typename!r} is bound in the module")
        limit = _limit(request)
        if isinstance(limit, web.Response):
            return limit
        ids = self.store.addresses(typename, request.query.get("after", ""), limit)
        if self.peers is not None:  # each worker's page is sorted: merge them and keep the first ones
            parts = await self._peer_parts(request)
            if isinstance(parts, web.Response):
                return parts
            ids = sorted({*ids, *(id for part in parts for id in part["ids"])})[:limit]
        page: dict[str, typing.Any] = {"function_type": typename, "ids": ids}
        if len(ids) == limit:
            page["next"] = f"/addresses/{typename}?after={quote(ids[-1])}&limit={limit}"
        return web.json_response(page)

    async def delayed(self, request: web.Request) -> web.Response:
        """The delayed messages an address sent that are still pending."""
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        pending = []
        for timer in self.runtime.timers.pending_for(target.typename, target.id):
            shown = describe(timer.envelope.value.typename, timer.envelope.value.value)
            pending.append({"timer_id": timer.timer_id, "due_at_ms": timer.due_ms, "cancellation_token": timer.token,
                            "target": f"{timer.envelope.target.typename}/{timer.envelope.target.id}", **shown})
        return web.json_response(pending)

    async def cancel_delayed(self, request: web.Request) -> web.Response:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        try:
            timer_id = int(request.match_info["timer_id"])
        except ValueError:
            return _error(400, "the timer id is a number: take it from GET /delayed/{ns}/{type}/{id}")
        pending = {t.timer_id for t in self.runtime.timers.pending_for(target.typename, target.id)}
        if timer_id not in pending or self.runtime.cancel_timer(timer_id) is None:
            return _error(404, f"{target.typename}/{target.id} has no pending delayed message {timer_id}")
        epoch = self.runtime.epoch
        self.runtime.request_commit()
        await epoch.committed()
        return web.json_response({"cancelled": timer_id})

    def _target(self, request: web.Request) -> typing.Any:
        typename = f"{request.match_info['namespace']}/{request.match_info['type']}"
        try:
            return address(typename, request.match_info["id"])
        except ValueError as e:
            return _error(400, str(e))

    async def health(self, request: web.Request) -> web.Response:
        runtime = self.runtime
        body = {
            "status": "ok" if runtime.running else "stopping",
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self.started, 3),
            "partitions": runtime.partitions,
            "epochs_committed": runtime.commits,
            "parked_addresses": len(runtime.parked()),
            **self.io_status(),
        }
        if runtime.running and runtime.unavailable is not None:
            # alive and waiting for disk space, which a restart would not bring: still 200, so that a
            # liveness probe leaves it be, with the reason the ingress refuses messages meanwhile
            body["status"] = "unavailable"
            body["reason"] = runtime.unavailable
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
                                               value=encode(name, spec.type_typename, entry, spec.read))
                except StateValueError as e:
                    return _error(400, str(e))
        epoch = self.runtime.write_address_state(target, changes)
        self.runtime.request_commit()
        await epoch.committed()
        return web.json_response(self._shown(target))

    def _shown(self, target) -> dict[str, typing.Any]:
        states = {}
        for name, stored in sorted(self.runtime.state_of(target).items()):
            shown = describe(stored.value.typename, stored.value.value)
            shown["expires_at_ms"] = stored.expire_at
            states[name] = shown
        return {"address": f"{target.typename}/{target.id}", "state": states}

    async def parked(self, request: web.Request) -> web.Response:
        """Parked addresses in address order, ``?after=ADDRESS&limit=N`` a page of them (a page shorter
        than ``limit`` is the last)."""
        limit = _limit(request)
        if isinstance(limit, web.Response):
            return limit
        after = request.query.get("after", "")
        parked = sorted(
            ({"address": f"{m.key[0]}/{m.key[1]}", "reason": m.parked,
              "waiting_messages": len(m.backlog) + m.spilled + len(m.overflow)}
             for m in self.runtime.parked() if f"{m.key[0]}/{m.key[1]}" > after),
            key=lambda entry: entry["address"])[:limit]
        if self.peers is not None:  # each worker's page is sorted: merge them and keep the first ones
            parts = await self._peer_parts(request)
            if isinstance(parts, web.Response):
                return parts
            parked = sorted([*parked, *(entry for part in parts for entry in part)], key=lambda entry: entry["address"])[:limit]
        return web.json_response(parked)

    async def _peer_parts(self, request: web.Request) -> list[typing.Any] | web.Response:
        try:
            return await self.peers.gather(request)
        except PeerError as e:
            return _error(502, f"the listing is incomplete: {e}")

    async def resume(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in ("resume", "skip"):
            return _error(404, f"unknown action {action!r}: POST .../resume (retry the failed message) or .../skip (drop it to the dead letters)")
        typename = f"{request.match_info['namespace']}/{request.match_info['type']}"
        target = address(typename, request.match_info["id"])
        if not self.runtime.resume(target, skip=action == "skip"):
            return _error(404, f"{typename}/{target.id} is not parked")
        self.runtime.request_commit()
        await self.runtime.epoch.committed()  # answered once the resume is durable
        return web.json_response({"address": f"{typename}/{target.id}", "resumed": True, "skipped": action == "skip"})

    async def dead_letters(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            return _error(400, "after must be an integer (a dead letter's seq)")
        limit = _limit(request)
        if isinstance(limit, web.Response):
            return limit
        # not on the event loop: the Kafka backend reads them from a topic
        return web.json_response(await asyncio.to_thread(self.store.dead_letters, after, limit))

    async def replay_dead_letter(self, request: web.Request) -> web.Response:
        """Sends a dead letter again to its target (once its cause is fixed), exactly once however often
        it is asked: the ingress takes it as a keyed message whose key is the dead letter's (see
        PlaygroundIngress.replay). On the Kafka backend the target's owner takes it, where the key is kept."""
        try:
            seq = int(request.match_info["seq"])
        except ValueError:
            return _error(400, f"a dead letter's seq is a number, not {request.match_info['seq']!r}: take it from "
                               "GET /dead-letters")
        # not on the event loop: the Kafka backend reads it from a topic
        letter = await asyncio.to_thread(self.store.dead_letter, seq)
        if letter is None:
            return _error(404, f"there is no dead letter {seq}: GET /dead-letters lists them")
        if not letter.target_id:
            return _error(409, f"dead letter {seq} is a record for egress {letter.target_type}, not a message to an "
                               "address: only messages are replayed")

        async def replay() -> web.Response:
            outcome = await self.ingress.replay(seq, letter)
            if isinstance(outcome, Response):
                return _answer(outcome)
            answer = {"seq": seq, "target": f"{letter.target_type}/{letter.target_id}", "replayed": outcome}
            if not outcome:
                answer["already_replayed"] = True
            return web.json_response(answer, status=202 if outcome else 200)

        if self.peers is not None:
            return await self.peers.to_owner_of(letter.target_id, request, replay)
        return await replay()

    async def send_message(self, request: web.Request) -> web.Response:
        """A message to the address, taken by the ingress's own acceptance (PlaygroundIngress.send): the
        same Content-Type and body, ``?wait`` and ``Idempotency-Key``, checks and guarantees. Answered
        in JSON: accepted (202), the reply decoded as state is (200), or the ingress's refusal."""
        typename = f"{request.match_info['namespace']}/{request.match_info['type']}"
        answer = await self.ingress.send(typename, request.match_info["id"], request.headers.get("Content-Type", ""),
                                         await request.read(), request.query.get("wait"),
                                         request.headers.get("Idempotency-Key"))
        target = f"{typename}/{request.match_info['id']}"
        if answer.status == 202:
            return web.json_response({"address": target, "accepted": True}, status=202)
        if answer.status == 200:
            reply_type = answer.headers.get("Content-Type", "").removeprefix("application/vnd.")
            return web.json_response({"address": target, "reply": describe(reply_type, answer.body)})
        return _answer(answer)


    async def savepoint(self, request: web.Request) -> web.Response:
        if self.savepoints is None:
            return _error(409, "the Kafka backend takes savepoints with its workers stopped: stop them (SIGTERM), then "
                               "pystatefun savepoint create --backend kafka --bootstrap-servers HOST:PORT --app NAME PATH")
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("path"), str) or not body["path"]:
            return _error(400, 'give the savepoint\'s path or URL as JSON: {"path": "/backups/shop-1.savepoint", '
                               '"stop": false}')
        stop = body.get("stop", False)
        if not isinstance(stop, bool):
            return _error(400, f"stop must be true or false, got {stop!r}")
        try:
            manifest = await self.savepoints(body["path"], stop)
        except SavepointError as e:
            return _error(409, str(e))
        return web.json_response(manifest, status=201)


def _answer(refusal: Response) -> web.Response:
    """The ingress's answer to a message it did not take, as the admin API answers: its status and
    Retry-After, its plain-text reason as ``{"error": ...}``."""
    response = _error(refusal.status, refusal.body.decode("utf-8", errors="replace").strip())
    if "Retry-After" in refusal.headers:
        response.headers["Retry-After"] = refusal.headers["Retry-After"]
    return response


def _origin_host(origin: str) -> str:
    """The host:port of an Origin header ('' for "null" and what does not parse). The host part only:
    behind a proxy that ends TLS the page's scheme is not the one this server sees."""
    try:
        return urlsplit(origin.lower()).netloc
    except ValueError:
        return ""


def _limit(request: web.Request) -> int | web.Response:
    try:
        limit = int(request.query.get("limit", str(DEFAULT_PAGE)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        return _error(400, f"limit must be an integer between 1 and {MAX_PAGE}")
    return limit
