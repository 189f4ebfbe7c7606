"""HTTP requests about an address that another worker owns, handed to that worker (Kafka backend).

Most ingress messages need no owner: a worker routes a message for a partition it does not own through
``<app>.messages``. Three things do need the owner's process: a request that waits for its reply (the
function answers on the worker that runs it), a request with an ``Idempotency-Key`` (the key's record is
kept with the address's partition), and the admin API's per-address routes (state, delayed messages,
resume/skip, messages sent and dead letters replayed through it). For these a middleware (for a dead
letter, whose target is known once it is read, the route itself) sends the request on to the owner's
server (found in the group, ``cluster.GroupView``) and relays its answer, so any worker can be asked.
A forwarded request that lands
on a worker that is not the owner any more is refused with 503 and a ``Pystatefun-Not-Owner`` header:
it was not applied, so it is tried again with a fresh view of the group, until the partition has an owner
again or OWNER_WAIT_SECONDS pass (a rebalance in progress).

The admin API's listings (addresses of a function type, parked addresses) and its views of the whole
application (overview, function graph, a function type's calls) ask every worker for its own part
(:meth:`Forwarding.gather`) and merge.
"""

from __future__ import annotations

import asyncio
import time
import typing
from dataclasses import dataclass

import aiohttp
import yarl
from aiohttp import web

from pystatefun.admin.api import PeerError
from pystatefun.backends.kafka.cluster import GroupView, Member
from pystatefun.io.http_server import Handler, Request, Response, text
from pystatefun.runtime.processor import Runtime

FORWARDED_BY = "Pystatefun-Forwarded-By"  # on a forwarded request: the worker it came from
NOT_OWNER = "Pystatefun-Not-Owner"  # on a refusal: the request was not applied, ask the owner
OWNER_WAIT_SECONDS = 10.0
RETRY_PAUSE_SECONDS = 0.2
CONNECT_TIMEOUT_SECONDS = 5.0
# how long the owner may take to answer, beyond what a request waits for its reply (?wait): it answers
# once its epoch commits, so longer means it is stuck, and the request gets a 502 instead of hanging
OWNER_ANSWER_SECONDS = 60.0
# per hop (RFC 9110 §7.6.1), or recomputed for the forwarded body
# and the browser's view of the first hop (its origin checks, admin/api.py): the worker that took the
# request checked it, and the owner, at another host:port, would take it for a foreign origin
NOT_FORWARDED = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                           "origin", "sec-fetch-site"})
RELAYED = ("Content-Type", "Retry-After")

Server = typing.Literal["ingress", "admin"]
T = typing.TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """What is sent on to the owner, whichever server (the ingress's or aiohttp's) took the request."""

    method: str
    raw_path: str
    headers: typing.Mapping[str, str]
    wait: str | None  # the request's ?wait, which the owner's answer may take
    read: typing.Callable[[], typing.Awaitable[bytes]]


class Forwarding:
    """Finds the owner of a request's address and hands the request to it (see the module docstring)."""

    def __init__(self, runtime: Runtime, view: GroupView, worker_id: str):
        self.runtime = runtime
        self.view = view
        self.worker_id = worker_id
        self._session: aiohttp.ClientSession | None = None

    def middleware(self, server: Server, needs_owner: typing.Callable[[web.Request], bool]) -> typing.Any:
        """An aiohttp middleware for routes with an ``{id}``: requests for which ``needs_owner`` holds go to
        the worker owning that id's partition (this one: handled here)."""
        @web.middleware
        async def to_owner(request: web.Request, handler: typing.Callable) -> web.StreamResponse:
            id = request.match_info.get("id")
            if id is None or not needs_owner(request):
                return await handler(request)
            return await self.to_owner_of(id, request, lambda: handler(request), server)
        return to_owner

    async def to_owner_of(self, id: str, request: web.Request,
                          here: typing.Callable[[], typing.Awaitable[web.StreamResponse]],
                          server: Server = "admin") -> web.StreamResponse:
        """``request``, which is about an address with this ``id``: answered by ``here`` on the worker that
        owns the id's partition, else sent on to that worker (its ``server``) and its answer relayed. For a
        route whose address is found only while it is handled (a dead letter's target)."""
        outgoing = _Outgoing(request.method, request.raw_path, request.headers, request.query.get("wait"), request.read)
        answer = await self._to_owner(self.runtime.partition_of(id), server, here, outgoing)
        if isinstance(answer, Response):
            return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        return answer

    def ingress_handler(self, needs_owner: typing.Callable[[Request], bool], handler: Handler) -> Handler:
        """The same for the playground ingress (io/http_server.py), whose paths are ``/{namespace}/{type}/{id}``."""
        async def to_owner(request: Request) -> Response:
            if len(request.segments) != 3 or not needs_owner(request):
                return await handler(request)

            async def read() -> bytes:
                return request.body

            outgoing = _Outgoing(request.method, request.raw_path, request.headers, request.query.get("wait"), read)
            return await self._to_owner(self.runtime.partition_of(request.segments[2]), "ingress",
                                        lambda: handler(request), outgoing)
        return to_owner

    async def _to_owner(self, partition: int, server: Server, here: typing.Callable[[], typing.Awaitable[T]],
                        outgoing: _Outgoing) -> T | Response:
        if partition in self.runtime.processors:
            return await here()
        if FORWARDED_BY in outgoing.headers:  # sent here by a worker whose view is out of date
            return text(503, f"worker {self.worker_id} does not own partition {partition}", **{NOT_OWNER: "1"})
        body = await outgoing.read()
        deadline = time.monotonic() + OWNER_WAIT_SECONDS
        fresh = False
        while True:
            owner = await self.view.owner(partition, fresh)
            if partition in self.runtime.processors:  # assigned here meanwhile, and restored
                return await here()
            if owner is not None and owner.worker_id != self.worker_id:
                url = getattr(owner.urls, server)
                if url is None:
                    return text(502, f"partition {partition} belongs to worker {owner.worker_id}, which serves no "
                                     f"{server} over HTTP: ask it directly, or give it one")
                answer = await self._send(outgoing, owner, url, body)
                if answer is not None:
                    return answer
            if time.monotonic() >= deadline:
                return text(503, f"partition {partition} has no worker to run it at the moment (the workers are "
                                 "rebalancing); the request was not applied: retry", **{"Retry-After": "1"})
            fresh = True
            await asyncio.sleep(RETRY_PAUSE_SECONDS)

    async def _send(self, outgoing: _Outgoing, owner: Member, url: str, body: bytes) -> Response | None:
        """The owner's answer, relayed; None when it did not take the request (so nothing was applied)."""
        headers = {k: v for k, v in outgoing.headers.items() if k.lower() not in NOT_FORWARDED}
        headers[FORWARDED_BY] = self.worker_id
        try:
            waits = float(outgoing.wait or "0")
        except ValueError:
            waits = 0.0  # the owner refuses it
        timeout = aiohttp.ClientTimeout(total=OWNER_ANSWER_SECONDS + max(0.0, min(waits, 3600.0)),
                                        sock_connect=CONNECT_TIMEOUT_SECONDS)
        try:
            async with self.session.request(outgoing.method, yarl.URL(url + outgoing.raw_path, encoded=True),
                                            data=body, headers=headers, timeout=timeout) as response:
                if response.status == 503 and NOT_OWNER in response.headers:
                    return None
                relayed = {k: response.headers[k] for k in RELAYED if k in response.headers}
                return Response(response.status, await response.read(), relayed)
        except aiohttp.ClientConnectorError:
            return None  # never reached it: the owner is gone, a new one comes with the next rebalance
        except (aiohttp.ClientError, TimeoutError) as e:
            return text(502, f"worker {owner.worker_id} (the owner) was lost or stuck while handling the request ({e!r}); "
                             "it may have been applied: retry with the same Idempotency-Key to be sure it is applied once")

    async def gather(self, request: web.Request) -> list[typing.Any]:
        """The JSON answers of the other workers' admin APIs to this GET, each for the partitions it owns
        (nothing when this request came from another worker: it wants this worker's part only)."""
        if self.asked_by_peer(request):
            return []
        others = [m for m in await self.view.members() if m.worker_id != self.worker_id]
        missing = [m.worker_id for m in others if m.urls.admin is None]
        if missing:
            raise PeerError(f"workers {', '.join(missing)} serve no admin API, so their part cannot be listed")
        headers = {FORWARDED_BY: self.worker_id}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]

        async def part(member: Member) -> typing.Any:
            try:
                async with self.session.get(yarl.URL(member.urls.admin + request.raw_path, encoded=True),
                                            headers=headers) as response:
                    if response.status != 200:
                        raise PeerError(f"worker {member.worker_id} answered {response.status}: {await response.text()}")
                    return await response.json()
            except (aiohttp.ClientError, TimeoutError) as e:
                raise PeerError(f"worker {member.worker_id} did not answer: {e}") from None

        return list(await asyncio.gather(*(part(m) for m in others)))

    def asked_by_peer(self, request: web.Request) -> bool:
        """Whether another worker sent this request (for its part of a listing, or as the owner)."""
        return FORWARDED_BY in request.headers

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=OWNER_ANSWER_SECONDS, sock_connect=CONNECT_TIMEOUT_SECONDS))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
