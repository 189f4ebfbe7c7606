"""The playground ingress and egress, compatible with StateFun's (spec §7.1), with real status codes.

Ingress (``io.statefun.playground.v1/ingress``): ``PUT`` or ``POST /{namespace}/{type}/{id}`` with
``Content-Type: application/vnd.{typename}`` sends the body as a message of that type. The answer is
202 only once the message is durably committed; an ``Idempotency-Key`` header makes a resubmission a
no-op that answers like the first.

Egress (``io.statefun.playground.v1/egress``): functions send ``io.statefun.playground/EgressRecord``
JSON values ``{"topic": ..., "payload": ...}``; ``GET /{topic}`` pops the oldest record (200) or answers
404 when there is none, ``?wait=SECONDS`` waiting for one. Records are written in the epoch commit, so
each appears exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import typing

from aiohttp import web

from pystatefun.runtime.envelope import Envelope, address
from pystatefun.runtime.epoch import EgressRecord, Epoch, IdempotencyRecord
from pystatefun.runtime.processor import Runtime
from pystatefun.runtime.waiting import wait_for_event
from pystatefun.sdk.address import parse_typename
from pystatefun.wire.request_reply_pb2 import TypedValue

log = logging.getLogger("pystatefun.io.playground")

INGRESS_ID = "io.statefun.playground/ingress"
EGRESS_ID = "io.statefun.playground/egress"
EGRESS_RECORD_TYPENAME = "io.statefun.playground/EgressRecord"
VND_PREFIX = "application/vnd."
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_WAIT_SECONDS = 60.0


def _text(status: int, reason: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers=headers)


class IdempotencyStore(typing.Protocol):
    def idempotency(self, key: str, now_ms: int) -> tuple[int, bytes] | None: ...


class PlaygroundIngress:
    """The HTTP ingress: turns requests into messages, answering once they are committed."""

    def __init__(self, runtime: Runtime, store: IdempotencyStore, idempotency_ttl_ms: int = 24 * 3600 * 1000):
        self.runtime = runtime
        self.store = store
        self.idempotency_ttl_ms = idempotency_ttl_ms
        self._pending: dict[str, Epoch] = {}  # idempotency keys accepted in epochs not yet committed

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{namespace}/{type}/{id}", self.handle)
        app.router.add_route("*", "/{tail:.*}", self.not_a_function_path)
        return app

    async def not_a_function_path(self, request: web.Request) -> web.Response:
        return _text(404, f"{request.path} is not a function address: send to /<namespace>/<type>/<id>")

    async def handle(self, request: web.Request) -> web.Response:
        if request.method not in ("PUT", "POST"):
            return _text(405, f"{request.method} is not supported: send messages with PUT or POST", Allow="PUT, POST")
        namespace, name, id = (request.match_info[k] for k in ("namespace", "type", "id"))
        function_type = f"{namespace}/{name}"
        content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip()
        if not content_type.startswith(VND_PREFIX):
            return _text(
                415,
                f"unsupported Content-Type {content_type or '(none)'!r}: name the message type as "
                "'application/vnd.<namespace>/<name>', e.g. application/vnd.example/GreetRequest",
            )
        value_type = content_type[len(VND_PREFIX):]
        try:
            parse_typename(value_type)
        except ValueError as e:
            return _text(415, f"the Content-Type does not name a message type: {e}")
        try:
            target = address(function_type, id)
        except ValueError as e:
            return _text(400, str(e))
        body = await request.read()
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            answer = await self._answered(f"{INGRESS_ID}:{key}")
            if answer is not None:
                return answer
        if not await self.runtime.admit(target):
            return _text(404, f"no function type {function_type!r} is bound in the module")
        if key is not None:  # a concurrent request with the same key may have got in while we waited
            answer = await self._answered(f"{INGRESS_ID}:{key}")
            if answer is not None:
                return answer
        self.runtime.route(Envelope(target, None, TypedValue(typename=value_type, has_value=True, value=body)))
        epoch = self.runtime.epoch
        if key is not None:
            full_key = f"{INGRESS_ID}:{key}"
            epoch.idempotency.append(IdempotencyRecord(full_key, self.runtime.now_ms() + self.idempotency_ttl_ms, 202, b""))
            self._pending[full_key] = epoch
            epoch.done.add_done_callback(lambda _: self._pending.pop(full_key, None))
        await asyncio.shield(epoch.done)
        return web.Response(status=202)

    async def _answered(self, key: str) -> web.Response | None:
        """The answer already given to a request with this idempotency key, if there was one."""
        pending = self._pending.get(key)
        if pending is not None:
            await asyncio.shield(pending.done)
            return web.Response(status=202)
        stored = self.store.idempotency(key, self.runtime.now_ms())
        if stored is None:
            return None
        status, body = stored
        return web.Response(status=status, body=body)


class EgressStore(typing.Protocol):
    def pop_egress(self, egress_id: str, topic: str) -> bytes | None: ...


class PlaygroundEgress:
    """The HTTP egress: named topics of records, each read once."""

    def __init__(self, store: EgressStore, topics: typing.Iterable[str]):
        self.store = store
        self.topics = frozenset(topics)
        self._changed = asyncio.Event()

    # -- the runtime side -------------------------------------------------------------------------------

    def record(self, egress_typename: str, value: TypedValue) -> EgressRecord:
        if value.typename != EGRESS_RECORD_TYPENAME:
            raise ValueError(
                f"the playground egress takes {EGRESS_RECORD_TYPENAME} values (JSON {{'topic', 'payload'}}), "
                f"got {value.typename!r}"
            )
        try:
            record = json.loads(value.value)
            topic, payload = record["topic"], record["payload"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"an EgressRecord must be JSON {{'topic': ..., 'payload': ...}}: {e}") from None
        if topic not in self.topics:
            raise ValueError(f"unknown egress topic {topic!r}; the module defines {sorted(self.topics)}")
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        return EgressRecord(EGRESS_ID, topic, data.encode("utf-8"))

    def committed(self) -> None:
        self._changed.set()

    # -- the HTTP side ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{topic}", self.handle)
        app.router.add_route("*", "/{tail:.*}", self.not_a_topic)
        return app

    async def not_a_topic(self, request: web.Request) -> web.Response:
        return _text(404, f"{request.path} is not a topic: GET /<topic>, one of {sorted(self.topics)}")

    async def handle(self, request: web.Request) -> web.Response:
        if request.method != "GET":
            return _text(405, f"{request.method} is not supported: read records with GET /<topic>", Allow="GET")
        topic = request.match_info["topic"]
        if topic not in self.topics:
            return _text(404, f"unknown topic {topic!r}; the module defines {sorted(self.topics)}")
        try:
            wait = min(float(request.query.get("wait", "0")), MAX_WAIT_SECONDS)
        except ValueError:
            return _text(400, f"wait must be a number of seconds, got {request.query.get('wait')!r}")
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            self._changed.clear()
            payload = self.store.pop_egress(EGRESS_ID, topic)
            if payload is not None:
                return web.Response(status=200, body=payload, content_type="text/plain", charset="utf-8")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return web.Response(status=404)
            await wait_for_event(self._changed, remaining)
