"""Invokers: how a batch of invocations reaches a function, embedded (a direct call) or remote (HTTP).

Both return the same Effects, which the runtime applies in one place. An invoker raises
InvocationError when the batch cannot complete; the runtime then parks the address.
"""

from __future__ import annotations

import os
import sysconfig
import time
import traceback
import typing

from google.protobuf.message import DecodeError

from pystatefun.runtime.health import EndpointHealth
from pystatefun.runtime.retry import FUNCTION_ERROR_STATUS
from pystatefun.runtime.specs import AFTER_CALL, StateSpec
from pystatefun.runtime.transport import RemoteCallError
from pystatefun.sdk.address import SdkAddress
from pystatefun.sdk.batch import Batch, BatchResult, Invocation
from pystatefun.sdk.context import DelayedMessage
from pystatefun.sdk.functions import StatefulFunction, StatefulFunctions
from pystatefun.sdk.messages import EgressMessage, Message
from pystatefun.wire import fields
from pystatefun.wire.request_reply_pb2 import Address, FromFunction, TypedValue

if typing.TYPE_CHECKING:
    from pystatefun.tracing import Tracing

# a function type an endpoint answered "not registered" (404) for: how long the ingress refuses its
# messages, and how many such types are remembered at once (the oldest is forgotten first)
UNREGISTERED_SECONDS = 60.0
MAX_UNREGISTERED_TYPES = 10_000
# how much of an embedded function's traceback a parked reason (and its log line) carries: the frames
# nearest the raise say where it went wrong, and the reason is stored with the address and shown by /parked
TRACEBACK_FRAMES = 5
TRACEBACK_MAX_CHARS = 4096

StateReader = typing.Callable[[SdkAddress, typing.Mapping[str, StateSpec]], dict[str, TypedValue | None]]
"""Reads the current, unexpired state of an address for the given specs (None = no value)."""


class InvocationError(Exception):
    """A batch could not be completed; the message says why and what to do."""


class UnknownFunctionTypeError(InvocationError):
    """The batch's function type does not exist where it is served (its endpoint answered 404): its
    messages have nowhere to go, like those for a type no module binds, and become dead letters."""


Effects = BatchResult
"""What a batch did, in the order the function asked for it (StateFun applies them in this order): the
SDK's BatchResult, as an embedded batch returns it, and as a remote one's answer is decoded into."""


class _SpecsOfFunctions:
    """What both invokers share: the state specs of each function type, and which of them expire after
    a call (every call moves those on, so the runtime asks for them once per batch)."""

    _rules: dict[str, tuple[dict[str, StateSpec], tuple[StateSpec, ...]]]

    def specs(self, typename: str) -> dict[str, StateSpec]:
        raise NotImplementedError

    def refusal(self, typename: str) -> str | None:
        """Why new messages to ``typename`` are refused now (the ingress answers 404), else None."""
        return None

    def trouble(self, typename: str) -> str | None:
        """Why ``typename``'s calls fail now, though they are retried (a remote endpoint that does not
        answer): what a request that waited in vain is told. None: nothing known."""
        return None

    def state_rules(self, typename: str) -> tuple[dict[str, StateSpec], tuple[StateSpec, ...]]:
        """The specs of ``typename`` and those of them that expire after a call, in one lookup per batch
        (forgotten, and made again, when the specs change)."""
        rules = self._rules.get(typename)
        if rules is None:
            specs = self.specs(typename)
            rules = self._rules[typename] = (specs, tuple(s for s in specs.values() if s.mode == AFTER_CALL))
        return rules


class EmbeddedInvoker(_SpecsOfFunctions):
    """Calls functions of a StatefulFunctions in this process: no network, no serialization of state."""

    def __init__(self, functions: StatefulFunctions, max_batch: int = 1000):
        self.functions = functions
        self.max_batch = max_batch
        self._specs: dict[str, dict[str, StateSpec]] = {}
        self._rules = {}
        self._bound: dict[str, tuple[StatefulFunction, dict[str, StateSpec]]] = {}  # see _function_and_specs

    def function(self, typename: str) -> StatefulFunction | None:
        return self.functions._functions.get(typename)

    def specs(self, typename: str) -> dict[str, StateSpec]:
        specs = self._specs.get(typename)
        if specs is None:
            function = self.function(typename)
            specs = {} if function is None else {s.name: StateSpec.of(s) for s in function.specs}
            self._specs[typename] = specs
        return specs

    def is_async(self, typename: str) -> bool:
        function = self.function(typename)
        return function is not None and function.is_async

    def _function_and_specs(self, typename: str) -> tuple[StatefulFunction, dict[str, StateSpec]]:
        """The function of ``typename`` and its specs: one lookup per batch (functions are bound before the
        runtime starts, so the pair never changes)."""
        bound = self._bound.get(typename)
        if bound is None:
            function = self.function(typename)
            if function is None:
                raise InvocationError(
                    f"no function {typename!r} in the embedded module; register it in its StatefulFunctions"
                )
            bound = self._bound[typename] = (function, self.specs(typename))
        return bound

    def invoke_sync(self, address: SdkAddress, read_state: StateReader, invocations: list[Invocation]) -> Effects:
        bound = self._bound.get(address.typename)  # once per message, mostly: _function_and_specs inlined
        function, specs = bound if bound is not None else self._function_and_specs(address.typename)
        batch = Batch(function, address, read_state(address, specs))
        try:
            return batch.run(invocations)
        except Exception as e:
            raise InvocationError(raised(address, e)) from e

    async def invoke(self, address: SdkAddress, read_state: StateReader, invocations: list[Invocation]) -> Effects:
        function, specs = self._function_and_specs(address.typename)
        batch = Batch(function, address, read_state(address, specs))
        try:
            return await batch.run_async(invocations)
        except Exception as e:
            raise InvocationError(raised(address, e)) from e


# where code that is not the application's lives: pystatefun itself, the standard library, installed
# packages (a frame elsewhere is the application's: see ``raised``)
_NOT_THE_APPLICATIONS = tuple(sorted({os.path.join(path, "") for path in (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    *(sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")))}))


def raised(address: SdkAddress, error: BaseException) -> str:
    """Why a batch failed when the function raised: the exception and where it was raised (the last
    TRACEBACK_FRAMES frames: file, line, function and source line), bounded to TRACEBACK_MAX_CHARS. When
    none of those is the application's own code (the SDK, a library or the standard library raised on
    its behalf: a message that is not valid JSON, say), the innermost frame of the application's comes
    first in their place, so the reason shows the line that called them."""
    head = f"{address.typename}/{address.id} raised {type(error).__name__}: {error}"
    every = traceback.extract_tb(error.__traceback__)
    frames, skipped = every[-TRACEBACK_FRAMES:], False
    if not any(_the_applications(frame) for frame in frames):
        theirs = [frame for frame in every[:-TRACEBACK_FRAMES] if _the_applications(frame)]
        if theirs:
            frames, skipped = [theirs[-1], *every[-(TRACEBACK_FRAMES - 1):]], True
    shown = (f"the application's innermost frame and the last {len(frames) - 1}" if skipped
             else f"the last {len(frames)} frames")
    lines = [f"Traceback ({shown}, most recent call last):"]
    for n, frame in enumerate(frames):
        if n == 1 and skipped:
            lines.append("  ...")  # the frames between the application's and the last ones
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    text = "\n".join([head, *lines])
    if len(text) > TRACEBACK_MAX_CHARS:  # a huge exception message: keep its start and the frames' end
        text = text[: TRACEBACK_MAX_CHARS // 2] + " ... " + text[-TRACEBACK_MAX_CHARS // 2 :]
    return text


def _the_applications(frame: traceback.FrameSummary) -> bool:
    return not os.path.abspath(frame.filename).startswith(_NOT_THE_APPLICATIONS)


class RemoteCaller(typing.Protocol):
    async def call(self, url: str, body: bytes, traceparent: str | None = None) -> bytes: ...


class RemoteInvoker(_SpecsOfFunctions):
    """Calls a remote function endpoint with the StateFun request-reply protocol.

    Registered state specs are kept per function type (and durably, through ``register``), so a restart
    does not renegotiate; a batch answered with IncompleteInvocationContext is re-sent with the missing
    states attached, as the StateFun runtime does.
    """

    MAX_NEGOTIATION_ROUNDS = 8

    def __init__(
        self,
        url_for: typing.Callable[[str], str],
        transport: RemoteCaller,
        max_batch: int,
        registered: dict[str, dict[str, StateSpec]],
        register: typing.Callable[[str, list[StateSpec]], None],
        health: EndpointHealth | None = None,
    ):
        self.url_for = url_for
        self._urls: dict[str, str] = {}  # url_for's answers, by function name
        self.transport = transport
        self.max_batch = max_batch
        self.registered = registered
        self._register = register
        self._rules = {}
        # told the function type, seconds and success of every call, retries included (the metrics hook)
        self.on_call: typing.Callable[[str, float, bool], None] | None = None
        # ok or failing, as the attempts tell it (the transport reports each one): /functions and /health
        self.health = health or EndpointHealth(url_for("{function.name}"))
        # function types the endpoint answered 404 for -> (monotonic time until which they are refused, its
        # answer); oldest first. A namespace binding (com.example/*) takes any type name, so without this
        # every message to a made-up name would cost a call to the endpoint
        self.unregistered: dict[str, tuple[float, str]] = {}
        self.clock: typing.Callable[[], float] = time.monotonic
        self.tracing: Tracing | None = None  # when set, each call is a span and sends its traceparent

    def specs(self, typename: str) -> dict[str, StateSpec]:
        return self.registered.setdefault(typename, {})

    def is_async(self, typename: str) -> bool:
        return True

    def refusal(self, typename: str) -> str | None:
        remembered = self.unregistered.get(typename)
        if remembered is None:
            return None
        until, answer = remembered
        left = until - self.clock()
        if left <= 0:
            del self.unregistered[typename]
            return None
        return (f"function type {typename!r} is not registered at its endpoint ({answer}); its messages are "
                f"refused for {left:.0f} s more: deploy it, then send again")

    def trouble(self, typename: str) -> str | None:
        health = self.health
        if health.failing_since is None:
            return None
        return (f"its endpoint {health.endpoint} has been failing for {health.clock() - health.failing_since:.0f} s "
                f"({health.last_error}); its calls are retried")

    def unregistered_types(self) -> dict[str, float]:
        """The function types refused now, with the seconds each stays refused (for /functions)."""
        now = self.clock()
        return {typename: round(until - now, 1) for typename, (until, _) in self.unregistered.items() if until > now}

    def _not_registered(self, typename: str, error: RemoteCallError) -> None:
        """The endpoint answered 404 for ``typename``: remember it, and forget what was kept for the type."""
        self.unregistered.pop(typename, None)  # re-inserted last: the dict stays oldest first
        while len(self.unregistered) >= MAX_UNREGISTERED_TYPES:
            del self.unregistered[next(iter(self.unregistered))]
        self.unregistered[typename] = (self.clock() + UNREGISTERED_SECONDS, f"HTTP 404 from {error.url}: {error.body}")
        if not self.registered.get(typename):  # no specs were ever registered: nothing to keep for it
            self.registered.pop(typename, None)
            self._rules.pop(typename, None)

    async def invoke(self, address: SdkAddress, read_state: StateReader, invocations: list[Invocation]) -> Effects:
        refusal = self.refusal(address.typename)
        if refusal is not None:  # messages that were on their way when the endpoint answered 404
            raise UnknownFunctionTypeError(refusal)
        url = self._urls.get(address.name)
        if url is None:
            if len(self._urls) >= MAX_UNREGISTERED_TYPES:  # a namespace binding takes any function name
                self._urls.clear()
            url = self._urls[address.name] = self.url_for(address.name)
        for _ in range(self.MAX_NEGOTIATION_ROUNDS):
            specs = self.specs(address.typename)
            state = read_state(address, specs)  # one entry per spec the request carries
            request = _request(address, state, invocations)
            started = time.perf_counter()
            try:
                if self.tracing is None:
                    answer = await self.transport.call(url, request)
                else:
                    answer = await self.tracing.remote_call(self.transport.call, url, request)
            except Exception as e:
                if self.on_call is not None:
                    self.on_call(address.typename, time.perf_counter() - started, False)
                if isinstance(e, RemoteCallError) and e.status == 404:
                    self._not_registered(address.typename, e)
                    raise UnknownFunctionTypeError(
                        f"{url} answered 404: the endpoint has no function {address.typename} ({e.body.strip()}); "
                        "deploy it, then send the message again"
                    ) from e
                if isinstance(e, RemoteCallError) and e.status == FUNCTION_ERROR_STATUS:
                    raise InvocationError(
                        f"{e}; the function raised: its traceback is in the function server's log (the runtime "
                        "gets only the HTTP 500)"
                    ) from e
                raise
            if self.on_call is not None:
                self.on_call(address.typename, time.perf_counter() - started, True)
            try:
                reply = FromFunction.FromString(answer)
            except DecodeError as e:
                raise InvocationError(f"{url} answered with bytes that are not a StateFun FromFunction: {e}") from e
            kind = reply.WhichOneof("response")
            if kind == "incomplete_invocation_context":
                self._negotiate(address.typename, reply.incomplete_invocation_context.missing_values, state.keys())
                continue
            return _effects(address, reply.invocation_result, specs) if kind else Effects([], [], [], [])
        raise InvocationError(
            f"{url} kept asking for state specs of {address.typename} after {self.MAX_NEGOTIATION_ROUNDS} rounds"
        )

    def _negotiate(
        self, typename: str, missing: typing.Iterable[FromFunction.PersistedValueSpec], sent: typing.Collection[str]
    ) -> None:
        """Registers the specs the function asked for. ``sent`` is what the refused request carried: asking
        again for one of those means the function and runtime disagree for good. A spec registered since
        the request went out (by a concurrent invocation of another address) only needs a retry."""
        specs = self.specs(typename)
        new = []
        missing = list(missing)
        repeated = [pb.state_name for pb in missing if pb.state_name in sent]
        if repeated:
            raise InvocationError(
                f"the function {typename} asked for states that the request already carried: {', '.join(repeated)}"
            )
        for pb in missing:
            spec = StateSpec.from_protocol(pb)
            known = specs.get(spec.name)
            if known is None:
                new.append(spec)
            elif known.type_typename != spec.type_typename:
                raise InvocationError(
                    f"state {spec.name!r} of {typename} is registered with type {known.type_typename!r}, but the "
                    f"function now declares {spec.type_typename!r}; a state's type cannot change -- use a new "
                    "state name, or delete the old state first"
                )
        for spec in new:
            specs[spec.name] = spec
        self._rules.pop(typename, None)
        self._register(typename, new)


def _request(address: SdkAddress, state: dict[str, TypedValue | None], invocations: list[Invocation]) -> bytes:
    """The serialized ToFunction of a batch, written field by field (wire/fields.py): the bytes protobuf's
    classes would give, at about half the CPU."""
    target = fields.address(address.namespace, address.name, address.id)
    parts = [b"\n", fields.varint(len(target)), target]  # target = 1
    for name, value in state.items():
        item = fields.field(b"\n", name.encode()) if name else b""  # state_name = 1
        if value is not None:
            item += fields.field(b"\x12", value.SerializeToString())  # state_value = 2
        parts += (b"\x12", fields.varint(len(item)), item)  # state = 2
    for caller, argument in invocations:
        item = fields.field(b"\x12", argument.SerializeToString())  # argument = 2
        if caller is not None:
            item = fields.field(b"\n", fields.address(caller.namespace, caller.name, caller.id)) + item  # caller = 1
        parts += (b"\x1a", fields.varint(len(item)), item)  # invocations = 3
    return fields.field(fields.TO_FUNCTION_INVOCATION, b"".join(parts))


def _typename(pb: Address) -> str:
    return f"{pb.namespace}/{pb.type}"


def _effects(address: SdkAddress, response: FromFunction.InvocationResponse, specs: dict[str, StateSpec]) -> Effects:
    """The response as Effects, refusing what the StateFun runtime refuses (and says why).

    Its repeated fields are read as slices (lists): protobuf's upb containers iterate by index until an
    IndexError, an exception per field per call even when the field is empty (twice the time of a slice)."""
    where = f"{address.typename}/{address.id}"
    mutations: list[tuple[str, TypedValue | None]] = []
    for m in response.state_mutations[:]:
        spec = specs.get(m.state_name)
        if spec is None:
            raise InvocationError(f"{where} changed state {m.state_name!r}, which it never declared")
        if m.mutation_type == FromFunction.PersistedValueMutation.MODIFY:
            if m.state_value.typename != spec.type_typename:
                raise InvocationError(
                    f"{where} wrote state {m.state_name!r} with type {m.state_value.typename!r}, but it is "
                    f"registered as {spec.type_typename!r}"
                )
            mutations.append((m.state_name, m.state_value))
        else:
            mutations.append((m.state_name, None))
    try:
        messages = [Message(_typename(m.target), m.target.id, m.argument) for m in response.outgoing_messages[:]]
    except ValueError as e:  # an empty target id or value: the function's SDK let it through
        raise InvocationError(f"{where} sent a message the runtime cannot deliver: {e}") from e
    delayed = []
    for d in response.delayed_invocations[:]:
        if d.is_cancellation_request:
            if not d.cancellation_token:
                raise InvocationError(f"{where} sent a delayed-message cancellation without a token")
            delayed.append(DelayedMessage(True, cancellation_token=d.cancellation_token))
        else:
            if d.delay_in_ms < 0:
                raise InvocationError(f"{where} sent a delayed message with a negative delay ({d.delay_in_ms} ms)")
            message = Message(_typename(d.target), d.target.id, d.argument)
            delayed.append(DelayedMessage(False, d.delay_in_ms, message, d.cancellation_token or None))
    egress = [EgressMessage(f"{e.egress_namespace}/{e.egress_type}", e.argument) for e in response.outgoing_egresses[:]]
    return Effects(messages, delayed, egress, mutations)
