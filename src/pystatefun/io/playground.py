"""The playground ingress and egress, compatible with StateFun's (spec §7.1), with real status codes.

Ingress (``io.statefun.playground.v1/ingress``): ``PUT`` or ``POST /{namespace}/{type}/{id}`` with
``Content-Type: application/vnd.{typename}`` sends the body as a message of that type. The answer is
202 only once the epoch holding the message (or its effects) is committed; an ``Idempotency-Key``
header makes a resubmission a no-op that answers like the first. With ``?wait=SECONDS`` the request
waits for the reply: the message's caller is a reply address (runtime/replies.py), and the first message
the function sends to it is the answer (200, ``Content-Type: application/vnd.{its typename}``), or 504
if none comes in time -- the message is processed exactly once either way, and a retry with the same
key gets the same answer. New messages are refused with 507 (and Retry-After) while the runtime cannot
store them (Runtime.unavailable: a full disk), and with 404 for a function type whose endpoint answered
lately that it has no such function (RemoteInvoker.refusal).

The same acceptance serves the admin API: its ``POST /messages/...`` (the console's "send a message")
and its dead-letter replay, a keyed message whose key never expires (``PlaygroundIngress.replay``).

Egress (``io.statefun.playground.v1/egress``): functions send ``io.statefun.playground/EgressRecord``
JSON values ``{"topic": ..., "payload": ...}``; ``GET /{topic}`` pops the oldest record (200) or answers
404 when there is none, ``?wait=SECONDS`` waiting for one. Records are written in the epoch commit, and
a read's deletion commits in an epoch before its answer, so each record is read once; a reader already
waiting takes its record in the epoch that makes it (PlaygroundEgress).
"""

from __future__ import annotations

import asyncio
import hashlib
import collections
import itertools
import json
import logging
import secrets
import typing

from google.protobuf.message import DecodeError

from pystatefun.io.http_server import Handler, HttpServer, Request, Response, text
from pystatefun.runtime.envelope import Envelope, address
from pystatefun.runtime.epoch import DeadLetter, EgressRecord, Epoch, IdempotencyRecord
from pystatefun.runtime.flows import FROM_INGRESS
from pystatefun.runtime.processor import Runtime
from pystatefun.runtime.replies import REPLY_TYPENAME
from pystatefun.sdk.address import SdkAddress, parse_typename
from pystatefun.sdk.messages import typed_value
from pystatefun.sdk.types import BUILTIN_TYPES
from pystatefun.wording import article
from pystatefun.wire.request_reply_pb2 import TypedValue

log = logging.getLogger("pystatefun.io.playground")

INGRESS_ID = "io.statefun.playground/ingress"
EGRESS_ID = "io.statefun.playground/egress"
EGRESS_RECORD_TYPENAME = "io.statefun.playground/EgressRecord"
VND_PREFIX = "application/vnd."
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_EGRESS_REQUEST_BYTES = 64 * 1024  # an egress read has no body to speak of
MAX_WAIT_SECONDS = 60.0
MAX_BUFFERED_RECORDS = 10_000  # committed egress records per topic kept in memory for readers
MAX_REPLY_WAIT_SECONDS = 300.0
UNAVAILABLE_RETRY_AFTER_SECONDS = 5  # the Retry-After of a 507 while the runtime cannot store messages
# the idempotency keys of replayed dead letters ("<this>:<seq>"), apart from the ingress's own keys; their
# records never expire, so a dead letter is delivered once however long after its first replay it is asked again
REPLAYED_DEAD_LETTER = "pystatefun/dead-letter-replay"
NEVER_EXPIRES_MS = 2**63 - 1  # the largest time a store keeps (SQLite INTEGER, protobuf int64)


class IdempotencyStore(typing.Protocol):
    def idempotency(self, key: str, now_ms: int) -> IdempotencyRecord | None: ...


class PlaygroundIngress:
    """The HTTP ingress: turns requests into messages, answering once they are committed (or, for a
    request that waits, once the reply is). It is also the runtime's ReplySink. It is served by the
    runtime's own small HTTP server (io/http_server.py), the hot path of every request from outside."""

    def __init__(self, runtime: Runtime, store: IdempotencyStore, idempotency_ttl_ms: int = 24 * 3600 * 1000):
        self.runtime = runtime
        self.store = store
        self.idempotency_ttl_ms = idempotency_ttl_ms
        # idempotency keys accepted in epochs not yet committed: the epoch, and the request's digest
        self._pending: dict[str, tuple[Epoch, str]] = {}
        self._waiting: dict[str, list[asyncio.Future]] = {}  # reply id -> requests waiting for it
        self._replying: dict[str, Epoch] = {}  # reply ids answered in epochs not yet committed
        self.responses: collections.Counter[int] = collections.Counter()  # answers by HTTP status
        # reply ids of requests without a key: unique across restarts (a message from before a crash may
        # still answer an old id), and cheaper than a uuid per request
        boot = secrets.token_hex(8)
        self._reply_ids = (f"{boot}-{n}" for n in itertools.count())

    def server(self, wrap: typing.Callable[[Handler], Handler] | None = None) -> HttpServer:
        """The ingress's HTTP server; ``wrap`` decorates the handler (the Kafka backend's forwarding)."""
        handler = self.handle if wrap is None else wrap(self.handle)

        async def counted(request: Request) -> Response:
            response = await handler(request)
            self.responses[response.status] += 1
            return response

        return HttpServer(counted, MAX_BODY_BYTES, name="playground ingress")

    async def handle(self, request: Request) -> Response:
        tracing = self.runtime.tracing
        if tracing is None:  # off: the one check tracing costs a request here
            return await self._handle(request, None)
        span = tracing.http_ingress(request.method, request.raw_path.split("?", 1)[0], request.segments,
                                    request.headers, INGRESS_ID)
        if span is None:  # not sampled
            return await self._handle(request, None)
        with tracing.current(span):
            response = await self._handle(request, tracing.traceparent(span))
            tracing.http_answered(span, response.status)
            return response

    async def _handle(self, request: Request, trace: str | None) -> Response:
        """A request; ``trace``: the traceparent its message carries (None: not traced)."""
        if len(request.segments) != 3 or not all(request.segments):
            return text(404, f"{request.raw_path.split('?', 1)[0]} is not a function address: "
                             "send to /<namespace>/<type>/<id>")
        if request.method not in ("PUT", "POST"):
            return text(405, f"{request.method} is not supported: send messages with PUT or POST", Allow="PUT, POST")
        namespace, name, id = request.segments
        return await self.send(f"{namespace}/{name}", id, request.headers.get("Content-Type", ""), request.body,
                               request.query.get("wait"), request.headers.get("Idempotency-Key"), trace)

    async def send(self, function_type: str, id: str, content_type: str, body: bytes, wait_for: str | None,
                   key: str | None, trace: str | None = None) -> Response:
        """Takes one message from outside as this ingress takes it (see the module docstring): the
        ``Content-Type`` header, the body, the ``?wait`` query value and the ``Idempotency-Key`` header
        as sent; ``trace``: the traceparent its message carries (None: not traced). The admin API's
        ``POST /messages/...`` hands its requests here too, so a message sent from the console is
        checked, made durable and answered exactly as one sent to the ingress."""
        content_type = content_type.split(";", 1)[0].strip()
        if not content_type.startswith(VND_PREFIX):
            return text(
                415,
                f"unsupported Content-Type {content_type or '(none)'!r}: name the message type as "
                "'application/vnd.<namespace>/<name>', e.g. application/vnd.example/GreetRequest",
            )
        value_type = content_type[len(VND_PREFIX):]
        try:
            parse_typename(value_type)
        except ValueError as e:
            return text(415, f"the Content-Type does not name a message type: {e}")
        invalid = _builtin_refusal(value_type, body)
        if invalid is not None:
            return invalid
        try:
            target = address(function_type, id)
        except ValueError as e:
            return text(400, str(e))
        refused = self._refusal(function_type)
        if refused is not None:
            return refused
        wait = _reply_wait(wait_for)
        if isinstance(wait, Response):
            return wait
        full_key = None if key is None else f"{INGRESS_ID}:{key}"
        # a waiting request's reply address: derived from its key, so that a retry waits for the same reply
        reply_id = None if wait is None else (f"key:{key}" if key is not None else next(self._reply_ids))
        caller = None if reply_id is None else address(REPLY_TYPENAME, reply_id)
        waiter = None if reply_id is None else self._wait_for(reply_id)
        value = typed_value(value_type, body)
        try:
            accepted = await self._deliver(target, value, full_key, key, caller,
                                           self.runtime.now_ms() + self.idempotency_ttl_ms, waits=waiter is not None,
                                           trace=trace)
            if isinstance(accepted, Response):
                return accepted
            if waiter is None:
                await accepted.committed()
                return Response(202)
            if accepted is None:  # a keyed retry whose message is committed: is it held at a parked address?
                reason = self.runtime.parked_holding(target, reply_id)
                if reason is not None:
                    self.parked(reply_id, f"{target.typename}/{target.id}", reason)
            return await self._reply_or_timeout(waiter, accepted, full_key, wait, target)
        finally:
            if waiter is not None:
                self._stop_waiting(reply_id, waiter)

    def _refusal(self, function_type: str) -> Response | None:
        """The answer to a new message that cannot be taken now: the runtime cannot store it (507), or
        the function's endpoint said lately that it has no such function (404)."""
        unavailable = self.runtime.unavailable
        if unavailable is not None:
            return text(507, f"{unavailable}; the message was not accepted: send it again later",
                        **{"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)})
        invoker = self.runtime.resolve(function_type)
        reason = None if invoker is None else invoker.refusal(function_type)
        return None if reason is None else text(404, reason)

    async def replay(self, seq: int, letter: DeadLetter) -> Response | bool:
        """Sends dead letter ``seq`` again to its target (with its caller), as a keyed ingress message
        whose key is the dead letter's and never expires, so that it is delivered once however often,
        and however concurrently, it is replayed. True once the message is committed; False when it was
        replayed before (that replay is committed by the time this returns); else the refusal, as the
        ingress would answer it (its function type is still not there, the disk is full)."""
        if letter.target_type == REPLY_TYPENAME:
            return text(409, f"dead letter {seq} is a reply whose request was answered already or waits no more: "
                             "there is nothing to send it to again")
        target = address(letter.target_type, letter.target_id)
        refused = self._refusal(letter.target_type)
        if refused is not None:
            return refused
        accepted = await self._deliver(target, letter.value, f"{REPLAYED_DEAD_LETTER}:{seq}", None, letter.caller,
                                       NEVER_EXPIRES_MS)
        if isinstance(accepted, Response):
            if accepted.status == 422:  # the key's record is of another message: the seqs were renumbered
                return text(409, f"a replay of another message is recorded as dead letter {seq}'s (a savepoint "
                                 "restore renumbered the dead letters): send this one with POST /messages instead")
            return False if accepted.status == 202 else accepted
        await accepted.committed()
        return True

    async def _deliver(self, target: SdkAddress, value: TypedValue, full_key: str | None, key: str | None,
                       caller: SdkAddress | None, expires_ms: int, waits: bool = False,
                       trace: str | None = None) -> Response | Epoch | None:
        """Sends the message: the epoch that carries it (its commit makes the message durable). Or the
        answer to give instead: a refusal, or for a retry of a keyed request, the first request's answer
        -- unless that was a 202 and this request ``waits`` for the reply (None: the message is committed
        already, and this request waits for the reply like the first). A keyed request's record is kept
        until ``expires_ms``."""
        digest = "" if full_key is None else _request_digest(target, value.typename, value.value)
        for admitted in (False, True):  # look again after admit: a concurrent retry may have got in
            earlier = None if full_key is None else await self._answered(full_key, digest, key)
            if earlier is not None:
                return None if earlier.status == 202 and waits else earlier
            if not admitted:
                full = self.runtime.parked_and_full(target)
                if full is not None:  # admit would wait for an operator: answer now
                    return text(503, f"{full}. The message was not accepted: send it again then.",
                                **{"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)})
                if not await self.runtime.admit(target):
                    return text(404, f"no function type {target.typename!r} is bound in the module")
        self.runtime.route(Envelope(target, caller, value, None, trace))
        self.runtime.flows.count(FROM_INGRESS, INGRESS_ID, target.typename)
        epoch = self.runtime.epoch
        if full_key is not None:
            epoch.idempotency.append(IdempotencyRecord(full_key, expires_ms, 202, b"", request=digest,
                                                       partition=self.runtime.partition_of(target.id)))
            self._pending[full_key] = (epoch, digest)
            epoch.on_commit(lambda: self._pending.pop(full_key, None))
        return epoch

    async def _answered(self, full_key: str, digest: str, key: str | None) -> Response | None:
        """The answer already given to a request with this idempotency key, if there was one; a 422 if
        the key was used for another request (another target, content type or body)."""
        pending = self._pending.get(full_key)
        if pending is not None:
            epoch, first = pending
            if first != digest:
                return _reused_key(key)
            await epoch.committed()
            return Response(202)
        stored = self.store.idempotency(full_key, self.runtime.now_ms())
        if stored is None:
            return None
        if stored.request and stored.request != digest:
            return _reused_key(key)
        return _stored_answer(stored)

    def _request_of(self, full_key: str, stored: IdempotencyRecord | None) -> str:
        """The digest of the request an idempotency key is kept for: in an epoch still committing, else in
        ``stored`` (the key's committed record, which the caller has read), else ""."""
        pending = self._pending.get(full_key)
        if pending is not None:
            return pending[1]
        return "" if stored is None else stored.request

    # -- request/reply ------------------------------------------------------------------------------

    def _wait_for(self, reply_id: str) -> asyncio.Future:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(reply_id, []).append(waiter)
        return waiter

    def _stop_waiting(self, reply_id: str, waiter: asyncio.Future) -> None:
        waiters = self._waiting.get(reply_id, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._waiting.pop(reply_id, None)

    async def _reply_or_timeout(self, waiter: asyncio.Future, accepted: Epoch | None, full_key: str | None,
                                wait: float, target: SdkAddress) -> Response:
        """The reply, or a 504 once ``wait`` has passed and the message is committed (saying so when the
        target's endpoint is failing meanwhile: ``Invoker.trouble``). The reply needs no
        wait for the message's commit of its own: it is answered only once the epoch that carries it
        commits, which is never before the message's."""
        if full_key is not None:  # answered while this retry was on its way
            stored = self.store.idempotency(full_key, self.runtime.now_ms())
            if stored is not None and stored.status != 202:
                return _stored_answer(stored)
        timeout = waiter.get_loop().call_later(wait, _expire, waiter)  # (get_running_loop() makes a system call)
        try:
            value: TypedValue | _Parked | None = await waiter
        finally:
            timeout.cancel()
        if isinstance(value, _Parked):
            if accepted is not None:
                await accepted.committed()  # the answer says the message is kept: it must be durable first
            return text(500, f"the message was accepted, but its address {value.where} is parked, so no reply "
                             f"comes until an operator acts; the message stays parked, nothing is lost. Reason: "
                             f"{value.reason}\nFix the cause, then resume it (pystatefun resume {value.where}, or "
                             f"POST /parked/{value.where}/resume on the admin API), or skip the failed message to "
                             f"the dead letters (pystatefun resume --skip {value.where}, or POST /parked/{value.where}/skip).")
        if value is None:
            if accepted is not None:
                await accepted.committed()
            retry = " Retry with the same Idempotency-Key to get the answer." if full_key else ""
            invoker = self.runtime.resolve(target.typename)
            trouble = None if invoker is None else invoker.trouble(target.typename)
            why = f" Its function {target.typename} may be why: {trouble}." if trouble else ""
            return text(504, f"no reply within {wait:g} s; the message was accepted and is processed exactly once."
                             f"{why}{retry}")
        return Response(200, value.value, {"Content-Type": f"{VND_PREFIX}{value.typename}"})

    def reply(self, epoch: Epoch, envelope: Envelope) -> str | None:
        """ReplySink: a function answered a waiting request (see runtime/replies.py)."""
        reply_id = envelope.target.id
        full_key = f"{INGRESS_ID}:{reply_id[len('key:'):]}" if reply_id.startswith("key:") else None
        if reply_id in self._replying:
            return "its request was answered already: only the first message to a reply address is the answer"
        if full_key is not None:
            stored = self.store.idempotency(full_key, self.runtime.now_ms())
            if stored is not None and stored.status != 202:
                return "its request was answered already: only the first message to a reply address is the answer"
            value = envelope.value
            # kept with the request's (the replying function's, as a rule) partition, where its retries go
            replier = envelope.caller.id if envelope.caller is not None else reply_id
            epoch.idempotency.append(IdempotencyRecord(
                full_key, self.runtime.now_ms() + self.idempotency_ttl_ms, 200, value.value, f"{VND_PREFIX}{value.typename}",
                request=self._request_of(full_key, stored), partition=self.runtime.partition_of(replier),
            ))
        elif reply_id not in self._waiting:
            return "no request waits for this reply any more (it timed out, or the runtime restarted)"
        self._replying[reply_id] = epoch
        epoch.on_commit(lambda: self._answer(reply_id, envelope.value))
        return None

    def parked(self, reply_id: str, where: str, reason: str) -> None:
        """ReplySink: the message of the request waiting on ``reply_id`` is held at a parked address."""
        for waiter in self._waiting.get(reply_id, []):
            if not waiter.done():
                waiter.set_result(_Parked(where, reason))

    def _answer(self, reply_id: str, value: TypedValue) -> None:
        self._replying.pop(reply_id, None)
        for waiter in self._waiting.pop(reply_id, []):
            if not waiter.done():
                waiter.set_result(value)


class _Parked(typing.NamedTuple):
    """What a waiting request learns when its message's address parks: no reply comes for now."""

    where: str
    reason: str


def _expire(waiter: asyncio.Future) -> None:
    """A waiting request's time is up: it ends with no reply (None)."""
    if not waiter.done():
        waiter.set_result(None)


def answered_by_owner(request: Request) -> bool:
    """Whether a request needs the process that owns its address's partition (on the Kafka backend):
    its answer is a reply that the function sends there, or is kept there with its idempotency key."""
    return "wait" in request.query or "Idempotency-Key" in request.headers


def _reply_wait(value: str | None) -> float | None | Response:
    """The ``?wait=SECONDS`` of a request that waits for its reply (None: it does not wait)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_REPLY_WAIT_SECONDS:
        return text(400, f"wait must be a number of seconds above 0 and at most {MAX_REPLY_WAIT_SECONDS:g}, got {value!r}")
    return seconds


# a value of each built-in type, for the CLI command that a refusal suggests
_BUILTIN_EXAMPLES = {"int": "5", "long": "5", "float": "1.5", "double": "1.5", "bool": "true", "string": "'\"hello\"'"}


def _builtin_refusal(value_type: str, body: bytes) -> Response | None:
    """A 400 for a body that is not a value of the built-in type its Content-Type names: taken, it would
    park the target address at its first read (curl -d 5 sends the text "5", not the IntWrapper)."""
    builtin = BUILTIN_TYPES.get(value_type)
    if builtin is None:
        return None
    try:
        builtin.serializer().deserialize(body)
    except (DecodeError, ValueError) as e:
        example = _BUILTIN_EXAMPLES[value_type.rsplit("/", 1)[1]]
        return text(400, f"the body is not {article(value_type)} {value_type} value ({e}): a built-in type's "
                         "bytes are the protobuf encoding of its wrapper message, not text; send the protobuf "
                         f"encoding, or use pystatefun send ADDRESS --type {value_type} --json {example}")
    return None


def _request_digest(target: SdkAddress, value_type: str, body: bytes) -> str:
    """What makes two requests with one idempotency key the same request: target, type and body."""
    digest = hashlib.sha256(f"{target.typename}\n{target.id}\n{value_type}\n".encode("utf-8"))
    digest.update(body)
    return digest.hexdigest()


def _reused_key(key: str | None) -> Response:
    return text(422, f"Idempotency-Key {key!r} was used for another request (another address, content type or "
                     "body): a retry must repeat its request exactly; send a new request with a new key")


def _stored_answer(record: IdempotencyRecord) -> Response:
    return Response(record.status, record.body, {"Content-Type": record.content_type} if record.content_type else {})


class EgressStore(typing.Protocol):
    def unread_egress(self, egress_id: str, topic: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]: ...


def decode_egress_record(value: TypedValue) -> tuple[str, bytes]:
    """The topic and the payload's bytes of an ``io.statefun.playground/EgressRecord`` (JSON ``{topic,
    payload}``; a payload that is not a string is written as JSON)."""
    try:
        record = json.loads(value.value)
        topic, payload = record["topic"], record["payload"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"an EgressRecord must be JSON {{'topic': ..., 'payload': ...}}: {e}") from None
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"an EgressRecord's topic must be a non-empty string, got {topic!r}")
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return topic, data.encode("utf-8")


class PlaygroundEgress:
    """The HTTP egress: named topics of records, each read once.

    The committed records of each topic wait in memory in order (up to MAX_BUFFERED_RECORDS; the rest
    stay on disk and are read in when those run out). A read takes the oldest, and its deletion goes into
    the open epoch: the record is answered once that epoch commits, so a read costs no transaction of its
    own, and a crash before the commit keeps the record for the next reader.

    A reader that finds nothing waits. When an epoch closes for its commit with records of a topic that
    has no older unread record, its waiting readers take them there and then: the record and its read
    commit together (the record is never stored), and the reader is answered with that commit instead of
    one commit later. A crash before it loses both, and the message that made the record runs again.
    """

    def __init__(self, runtime: Runtime, store: EgressStore, topics: typing.Iterable[str]):
        self.runtime = runtime
        self.store = store
        self.topics = frozenset(topics)
        self._unread: dict[str, collections.deque[tuple[int, bytes]]] = {t: collections.deque() for t in self.topics}
        self._last_seq = dict.fromkeys(self.topics, 0)  # the newest record of each topic taken into _unread
        self._on_disk_only = set(self.topics)  # topics with committed records not in _unread (at start: all)
        # readers waiting for a record, oldest first; each is given (payload, the epoch whose commit
        # makes its read durable), or None when its wait is over
        self._readers: dict[str, collections.deque[asyncio.Future]] = {t: collections.deque() for t in self.topics}
        runtime.on_seal.append(self._hand_over)

    # -- the runtime side -------------------------------------------------------------------------------

    def record(self, egress_typename: str, value: TypedValue) -> EgressRecord:
        if value.typename != EGRESS_RECORD_TYPENAME:
            raise ValueError(
                f"the playground egress takes {EGRESS_RECORD_TYPENAME} values (JSON {{'topic', 'payload'}}), "
                f"got {value.typename!r}"
            )
        topic, data = decode_egress_record(value)
        if topic not in self.topics:
            raise ValueError(f"unknown egress topic {topic!r}; the module defines {sorted(self.topics)}")
        return EgressRecord(EGRESS_ID, topic, data)

    def _hand_over(self, epoch: Epoch) -> None:
        """``epoch`` closes for its commit: its records go to the readers waiting for them, in order. Every
        older epoch has committed by now, so a topic with nothing unread has no older record anywhere."""
        if not any(self._readers.values()):
            return
        kept = []
        for record in epoch.egress:
            reader = self._waiting_reader(record.topic) if record.egress_id == EGRESS_ID else None
            if reader is None:
                kept.append(record)
            else:
                reader.set_result((record.payload, epoch))
        epoch.egress = kept

    def committed(self, epoch: Epoch) -> None:
        for record in epoch.egress:
            if record.egress_id == EGRESS_ID:
                self._take(record.topic, record.seq, record.payload)
        for topic, readers in self._readers.items():  # the readers still waiting take what came
            while readers:
                reader = readers.popleft()
                if reader.done():
                    continue  # its wait is over
                record = self._next(topic)
                if record is None:
                    readers.appendleft(reader)
                    break
                reader.set_result(self._read(record))

    def _waiting_reader(self, topic: str) -> asyncio.Future | None:
        """The oldest reader still waiting for a record of ``topic``, taken off the queue, if the topic has
        nothing older unread (a closing epoch's records come after every committed one)."""
        if self._unread[topic] or topic in self._on_disk_only:
            return None
        readers = self._readers[topic]
        while readers:
            reader = readers.popleft()
            if not reader.done():  # else its wait is over
                return reader
        return None

    def _take(self, topic: str, seq: int, payload: bytes) -> None:
        if seq <= self._last_seq[topic]:
            return  # read in from disk already, while its commit was finishing
        if topic in self._on_disk_only or len(self._unread[topic]) >= MAX_BUFFERED_RECORDS:
            self._on_disk_only.add(topic)  # the next read from disk finds it, in order
            return
        self._unread[topic].append((seq, payload))
        self._last_seq[topic] = seq

    def _next(self, topic: str) -> tuple[int, bytes] | None:
        """The oldest committed record nobody has read, taken off the topic."""
        unread = self._unread[topic]
        if not unread and topic in self._on_disk_only:
            rows = self.store.unread_egress(EGRESS_ID, topic, self._last_seq[topic], MAX_BUFFERED_RECORDS)
            if len(rows) < MAX_BUFFERED_RECORDS:
                self._on_disk_only.discard(topic)
            for seq, payload in rows:
                unread.append((seq, payload))
                self._last_seq[topic] = seq
        return unread.popleft() if unread else None

    def _read(self, record: tuple[int, bytes]) -> tuple[bytes, Epoch]:
        """Reads a committed record: its deletion goes into the open epoch, committed soon."""
        seq, payload = record
        epoch = self.runtime.epoch
        epoch.egress_read.append(seq)
        self.runtime.request_commit()
        return payload, epoch

    # -- the HTTP side ----------------------------------------------------------------------------------

    def server(self) -> HttpServer:
        return HttpServer(self.handle, MAX_EGRESS_REQUEST_BYTES, name="playground egress")

    async def handle(self, request: Request) -> Response:
        if len(request.segments) != 1 or not request.segments[0]:
            return text(404, f"{request.raw_path.split('?', 1)[0]} is not a topic: GET /<topic>, one of {sorted(self.topics)}")
        if request.method != "GET":
            return text(405, f"{request.method} is not supported: read records with GET /<topic>", Allow="GET")
        topic = request.segments[0]
        if topic not in self.topics:
            return text(404, f"unknown topic {topic!r}; the module defines {sorted(self.topics)}")
        try:
            wait = min(float(request.query.get("wait", "0")), MAX_WAIT_SECONDS)
        except ValueError:
            return text(400, f"wait must be a number of seconds, got {request.query.get('wait')!r}")
        record = self._next(topic)
        if record is not None:
            payload, epoch = self._read(record)
        elif wait > 0:
            loop = asyncio.get_running_loop()
            reader = loop.create_future()
            self._readers[topic].append(reader)
            timeout = loop.call_later(wait, _expire, reader)
            try:
                given = await reader
            finally:
                timeout.cancel()
            if given is None:
                return Response(404)
            payload, epoch = given
        else:
            return Response(404)
        await epoch.committed()
        return Response(200, payload, {"Content-Type": "text/plain; charset=utf-8"})
