"""Test functions in-process: no server, no runtime.

::

    from pystatefun.testing import FunctionTester

    tester = FunctionTester(functions)
    result = tester.invoke("com.example/counter", "alice", 5, state={"count": 1})
    assert result.state == {"count": 6}
    assert result.messages[0].as_int() == 6

The tester keeps each address's state between calls (``state=`` replaces it), has a manual clock that
drives TTLs and delayed messages (``tester.clock.advance(...)``, ``tester.advance(...)``), and runs the
function exactly as a remote endpoint or the runtime would: the same batch code, the same storage.
"""

from __future__ import annotations

import asyncio
import itertools
import typing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pystatefun.sdk.address import SdkAddress, address_of
from pystatefun.sdk.batch import Batch, BatchResult
from pystatefun.sdk.functions import StatefulFunction, StatefulFunctions
from pystatefun.sdk.messages import EgressMessage, Message, to_typed_value
from pystatefun.sdk.types import BoolType, FloatType, IntType, StringType, Type
from pystatefun.sdk.value_spec import ValueSpec
from pystatefun.wire.request_reply_pb2 import TypedValue

__all__ = ["FunctionTester", "InvocationResult", "ManualClock", "ScheduledMessage"]

# How a plain Python value is typed when no value_type is given (the official SDK's mapping).
_INFERRED_TYPES: dict[type, Type] = {bool: BoolType, int: IntType, float: FloatType, str: StringType}


class ManualClock:
    """A clock that moves only when told to. Starts at 2024-01-01T00:00:00Z unless given a start."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime(2024, 1, 1, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta | float) -> datetime:
        """Moves the clock forward by a timedelta or a number of seconds; returns the new time."""
        delta = by if isinstance(by, timedelta) else timedelta(seconds=by)
        if delta < timedelta(0):
            raise ValueError(f"a clock only moves forward; got {delta}")
        self._now += delta
        return self._now


@dataclass(frozen=True)
class ScheduledMessage:
    """A delayed message: who sent it, when it falls due, and its cancellation token (if any)."""

    message: Message
    sender: SdkAddress
    delay: timedelta
    due: datetime
    cancellation_token: str | None


@dataclass
class InvocationResult:
    """What one call did: the state after it and every effect, in the order the function asked for them."""

    address: SdkAddress
    state: dict[str, typing.Any]
    messages: list[Message] = field(default_factory=list)
    delayed: list[ScheduledMessage] = field(default_factory=list)
    cancellations: list[str] = field(default_factory=list)
    egress: list[EgressMessage] = field(default_factory=list)


@dataclass
class _StoredValue:
    value: TypedValue
    written: datetime
    touched: datetime  # last call of the function, for expire_after_call


class FunctionTester:
    """Runs the functions of a StatefulFunctions one invocation at a time, with a manual clock."""

    def __init__(self, functions: StatefulFunctions, clock: ManualClock | None = None):
        self.functions = functions
        self.clock = clock or ManualClock()
        self._state: dict[tuple[str, str], dict[str, _StoredValue]] = {}
        self._pending: list[tuple[datetime, int, ScheduledMessage]] = []
        self._sequence = itertools.count()

    # -- invoking ---------------------------------------------------------------------------------

    def invoke(
        self,
        typename: str,
        id: str,
        value: typing.Any = None,
        *,
        value_type: Type | None = None,
        state: typing.Mapping[str, typing.Any] | None = None,
        caller: SdkAddress | str | tuple[str, str] | None = None,
    ) -> InvocationResult:
        """Invokes ``typename``/``id`` with one message and returns what it did.

        ``value`` is a Message, or a value typed by ``value_type`` (bool, int, float and str are typed as
        BoolType, IntType, FloatType and StringType when ``value_type`` is omitted). ``state`` replaces the
        address's state first (values in their Python form). ``caller`` is an SdkAddress, a
        ``"namespace/name/id"`` string or a ``(typename, id)`` pair; None means "from an ingress".
        """
        batch, invocation = self._prepare(typename, id, value, value_type, state, caller)
        if batch.function.is_async:
            result = asyncio.run(batch.run_async([invocation]))
        else:
            result = batch.run([invocation])
        return self._commit(batch.context.address, batch.function, result)

    async def invoke_async(
        self,
        typename: str,
        id: str,
        value: typing.Any = None,
        *,
        value_type: Type | None = None,
        state: typing.Mapping[str, typing.Any] | None = None,
        caller: SdkAddress | str | tuple[str, str] | None = None,
    ) -> InvocationResult:
        """``invoke`` for use inside a running event loop (async tests)."""
        batch, invocation = self._prepare(typename, id, value, value_type, state, caller)
        result = await batch.run_async([invocation])
        return self._commit(batch.context.address, batch.function, result)

    def send(self, message: Message, caller: SdkAddress | str | tuple[str, str] | None = None) -> InvocationResult:
        """Delivers a Message (for example one a function sent) to its target."""
        return self.invoke(message.target_typename, message.target_id, message, caller=caller)

    def deliver(self, scheduled: ScheduledMessage) -> InvocationResult:
        """Delivers a delayed message to its target, with its sender as the caller."""
        return self.send(scheduled.message, caller=scheduled.sender)

    # -- time ---------------------------------------------------------------------------------------

    def advance(self, by: timedelta | float) -> list[ScheduledMessage]:
        """Moves the clock and returns the delayed messages that fell due, in due order.

        They leave the pending list; pass each to ``deliver`` to run its target.
        """
        now = self.clock.advance(by)
        self._pending.sort(key=lambda entry: entry[:2])
        due = [entry for entry in self._pending if entry[0] <= now]
        self._pending = self._pending[len(due) :]
        return [entry[2] for entry in due]

    def pending(self) -> list[ScheduledMessage]:
        """Delayed messages not yet due and not cancelled, in due order."""
        return [entry[2] for entry in sorted(self._pending, key=lambda entry: entry[:2])]

    # -- state --------------------------------------------------------------------------------------

    def state(self, typename: str, id: str) -> dict[str, typing.Any]:
        """The current (unexpired) state of an address, as Python values."""
        function = self.functions.for_typename(typename)
        return self._decoded(function, self._live_state(function, (typename, id)))

    # -- internals ----------------------------------------------------------------------------------

    def _prepare(self, typename, id, value, value_type, state, caller) -> tuple[Batch, tuple]:
        function = self.functions.for_typename(typename)
        address = address_of(typename, id)
        key = (typename, id)
        if state is not None:
            self._state[key] = self._encode_state(function, state)
        stored = self._live_state(function, key)
        received = {name: entry.value for name, entry in stored.items()}
        return Batch(function, address, received), (_caller(caller), _argument(value, value_type))

    def _encode_state(self, function: StatefulFunction, state: typing.Mapping[str, typing.Any]) -> dict[str, _StoredValue]:
        specs = {spec.name: spec for spec in function.specs}
        now = self.clock.now()
        encoded = {}
        for name, value in state.items():
            spec = specs.get(name)
            if spec is None:
                raise KeyError(
                    f"state {name!r} is not declared by function {function.typename!r} "
                    f"(declared: {', '.join(specs) or 'none'})"
                )
            if value is not None:
                spec.type.validate(value)
                encoded[name] = _StoredValue(to_typed_value(spec.type, value), now, now)
        return encoded

    def _live_state(self, function: StatefulFunction, key: tuple[str, str]) -> dict[str, _StoredValue]:
        """The address's state with expired values removed (reclaimed), per the clock."""
        stored = self._state.setdefault(key, {})
        now = self.clock.now()
        for spec in function.specs:
            entry = stored.get(spec.name)
            if entry is not None and _expired(spec, entry, now):
                del stored[spec.name]
        return stored

    def _commit(self, address: SdkAddress, function: StatefulFunction, result: BatchResult) -> InvocationResult:
        now = self.clock.now()
        stored = self._state.setdefault((address.typename, address.id), {})
        for entry in stored.values():
            entry.touched = now  # every call reads all of the address's state
        for name, value in result.mutations:
            if value is None:
                stored.pop(name, None)
            else:
                stored[name] = _StoredValue(value, now, now)
        outcome = InvocationResult(
            address=address,
            state=self._decoded(function, stored),
            messages=list(result.messages),
            egress=list(result.egress),
        )
        for d in result.delayed:
            if d.is_cancellation:
                outcome.cancellations.append(d.cancellation_token)
                self._cancel(address, d.cancellation_token)
            else:
                token = d.cancellation_token or None
                if token and any(e[2].sender == address and e[2].cancellation_token == token for e in self._pending):
                    raise ValueError(
                        f"{address.typename}/{address.id} sent a second delayed message with the pending "
                        f"cancellation token {token!r}; tokens must be unique per sender"
                    )
                delay = timedelta(milliseconds=d.duration_ms)
                scheduled = ScheduledMessage(d.message, address, delay, now + delay, token)
                outcome.delayed.append(scheduled)
                self._pending.append((scheduled.due, next(self._sequence), scheduled))
        return outcome

    def _cancel(self, sender: SdkAddress, token: str) -> None:
        self._pending = [
            e for e in self._pending if not (e[2].sender == sender and e[2].cancellation_token == token)
        ]

    @staticmethod
    def _decoded(function: StatefulFunction, stored: dict[str, _StoredValue]) -> dict[str, typing.Any]:
        values = {}
        for spec in function.specs:
            entry = stored.get(spec.name)
            if entry is not None:
                values[spec.name] = spec.type.serializer().deserialize(entry.value.value)
        return values


def _expired(spec: ValueSpec, entry: _StoredValue, now: datetime) -> bool:
    ttl = timedelta(milliseconds=spec.duration)
    if spec.after_write:
        return now - entry.written >= ttl
    if spec.after_call:
        return now - entry.touched >= ttl
    return False


def _argument(value: typing.Any, value_type: Type | None) -> TypedValue:
    if isinstance(value, Message):
        return value.typed_value
    if value_type is None:
        value_type = _INFERRED_TYPES.get(type(value))
        if value_type is None:
            raise TypeError(
                f"cannot tell the type of {value!r}; pass value_type= (for example make_json_type(...)) "
                "or a Message"
            )
    return to_typed_value(value_type, value)


def _caller(caller: SdkAddress | str | tuple[str, str] | None) -> SdkAddress | None:
    if caller is None or isinstance(caller, SdkAddress):
        return caller
    if isinstance(caller, tuple):
        return address_of(*caller)
    typename, sep, id = caller.rpartition("/")
    if not sep or not id:
        raise ValueError(f"caller {caller!r} must look like 'namespace/name/id'")
    return address_of(typename, id)
