"""RequestReplyHandler: the StateFun request-reply protocol on top of the SDK.

Bytes of a ``ToFunction`` come in; the batch runs (sdk/batch.py); the bytes of a ``FromFunction`` go
out: either the batch's effects, or the state specs the runtime has to register before anything runs.
"""

from __future__ import annotations

import asyncio
import typing

from google.protobuf.message import DecodeError

from pystatefun.sdk.address import SdkAddress, parse_typename
from pystatefun.sdk.batch import Batch, BatchResult, Invocation
from pystatefun.sdk.errors import MalformedRequestError
from pystatefun.sdk.functions import StatefulFunction, StatefulFunctions
from pystatefun.sdk.value_spec import ValueSpec
from pystatefun.serving.threads import SyncFunctionRunner
from pystatefun.wire import fields
from pystatefun.wire.request_reply_pb2 import Address, FromFunction, ToFunction
from pystatefun.wire.values import copy_into

_ExpireMode = FromFunction.ExpirationSpec.ExpireMode


class RequestReplyHandler:
    """Serves a StatefulFunctions over the StateFun request-reply protocol, from any HTTP framework."""

    __slots__ = ("functions",)

    def __init__(self, functions: StatefulFunctions):
        if not functions:
            raise ValueError("functions must be provided.")
        self.functions = functions

    def handle_sync(self, request_bytes: bytes | bytearray | str) -> bytes:
        """Handles one request. Synchronous functions run right here; async ones in a fresh event loop."""
        prepared = self._prepare(request_bytes)
        if isinstance(prepared, bytes):
            return prepared
        batch, invocations = prepared
        if batch.function.is_async:
            return _encode_result(asyncio.run(batch.run_async(invocations)))
        return _encode_result(batch.run(invocations))

    async def handle_async(self, request_bytes: bytes | bytearray | str, *,
                           sync_runner: SyncFunctionRunner | None = None) -> bytes:
        """Handles one request inside a running event loop. Async functions run on the loop; synchronous
        ones too, as in the official SDK, unless ``sync_runner`` is given: then it decides where (the
        serving apps pass theirs, which moves a function that blocks the loop to a thread; threads.py)."""
        reply = self.handle_now(request_bytes, sync_runner=sync_runner)
        return reply if isinstance(reply, bytes) else await reply

    def handle_now(self, request_bytes: bytes | bytearray | str, *,
                   sync_runner: SyncFunctionRunner | None = None) -> bytes | typing.Awaitable[bytes]:
        """``handle_async`` without its coroutine where none is needed: the reply's bytes when the batch
        could run right here (a synchronous function the ``sync_runner`` keeps on the loop, or a request
        answered without running anything), else an awaitable of them, to await in a task (an async
        function may use what needs one, ``asyncio.timeout`` say)."""
        prepared = self._prepare(request_bytes)
        if isinstance(prepared, bytes):
            return prepared
        batch, invocations = prepared
        if batch.function.is_async or sync_runner is None:
            return self._run_async(batch, invocations)
        if batch.function.typename in sync_runner.in_threads:
            return self._run_in_thread(batch, invocations, sync_runner)
        return _encode_result(sync_runner.run_here(batch, invocations))

    @staticmethod
    async def _run_async(batch: Batch, invocations: typing.Iterator[Invocation]) -> bytes:
        return _encode_result(await batch.run_async(invocations))

    @staticmethod
    async def _run_in_thread(batch: Batch, invocations: typing.Iterator[Invocation],
                             sync_runner: SyncFunctionRunner) -> bytes:
        return _encode_result(await sync_runner.run(batch, invocations))

    def _prepare(self, request_bytes: bytes | bytearray | str) -> bytes | tuple[Batch, typing.Iterator[Invocation]]:
        """Parses the request and resolves state: a ready batch, or the reply asking for missing specs."""
        request = _parse(request_bytes)
        target = request.target
        typename = f"{target.namespace}/{target.type}"
        function: StatefulFunction = self.functions.for_typename(typename)
        # repeated fields as slices: upb's containers iterate until an IndexError (runtime/invokers.py, _effects)
        state = {pv.state_name: (pv.state_value if pv.HasField("state_value") else None) for pv in request.state[:]}
        missing = function.storage_spec.missing(state)
        if missing:
            return _encode_missing(missing)
        address = SdkAddress(target.namespace, target.type, target.id, typename)
        return Batch(function, address, state), _invocations(request.invocations[:])


def _parse(request_bytes: bytes | bytearray | str) -> ToFunction.InvocationBatchRequest:
    if isinstance(request_bytes, str):
        request_bytes = request_bytes.encode("latin-1")  # the official SDK accepts str payloads too
    try:
        to_function = ToFunction.FromString(bytes(request_bytes))
    except DecodeError as e:
        raise MalformedRequestError(f"the request body is not a StateFun ToFunction message: {e}") from None
    if not to_function.HasField("invocation"):
        raise MalformedRequestError("the ToFunction request carries no invocation batch")
    request = to_function.invocation
    target = request.target
    if not target.namespace or not target.type:
        raise MalformedRequestError(
            f"the invocation batch has no valid target function type: {target.namespace!r}/{target.type!r}"
        )
    return request


def _invocations(pb_invocations: typing.Iterable[ToFunction.Invocation]) -> typing.Iterator[Invocation]:
    callers: dict[tuple[str, str, str], SdkAddress | None] = {}
    for pb in pb_invocations:
        caller = pb.caller
        key = (caller.namespace, caller.type, caller.id)
        sdk_caller = callers.get(key, _MISSING)
        if sdk_caller is _MISSING:
            # An all-empty caller means "from an ingress", exactly as the official SDKs read it.
            if key == ("", "", ""):
                sdk_caller = None
            else:
                sdk_caller = SdkAddress(key[0], key[1], key[2], f"{key[0]}/{key[1]}")
            callers[key] = sdk_caller
        yield sdk_caller, pb.argument


_MISSING = object()


def _encode_missing(missing: list[ValueSpec]) -> bytes:
    reply = FromFunction()
    values = reply.incomplete_invocation_context.missing_values
    for spec in missing:
        if spec.after_call:
            expiration = FromFunction.ExpirationSpec(mode=_ExpireMode.AFTER_INVOKE, expire_after_millis=spec.duration)
        elif spec.after_write:
            expiration = FromFunction.ExpirationSpec(mode=_ExpireMode.AFTER_WRITE, expire_after_millis=spec.duration)
        else:
            expiration = FromFunction.ExpirationSpec(mode=_ExpireMode.NONE)
        values.add(state_name=spec.name, type_typename=spec.type.typename, expiration_spec=expiration)
    return reply.SerializeToString()


def _address(typename: str, id: str) -> bytes:
    namespace, name = parse_typename(typename)
    return fields.address(namespace, name, id)


def _encode_result(result: BatchResult) -> bytes:
    """The FromFunction of a batch's effects, written field by field (wire/fields.py): the bytes protobuf's
    classes would give (empty when the batch had no effects), at about half the CPU. Delayed messages and
    egress records, rarer, are built with the classes."""
    parts = []
    for name, value in result.mutations:  # state_mutations = 1
        item = fields.field(b"\x12", name.encode()) if name else b""  # state_name = 2
        if value is not None:  # MODIFY; DELETE is the default, 0, and is left out
            item = b"\x08\x01" + item + fields.field(b"\x1a", value.SerializeToString())  # type 1, value 3
        parts += (b"\n", fields.varint(len(item)), item)
    for message in result.messages:  # outgoing_messages = 2: target = 1, argument = 2
        item = (fields.field(b"\n", _address(message.target_typename, message.target_id))
                + fields.field(b"\x12", message.typed_value.SerializeToString()))
        parts += (b"\x12", fields.varint(len(item)), item)
    for d in result.delayed:  # delayed_invocations = 3
        if d.is_cancellation:
            pb = FromFunction.DelayedInvocation(is_cancellation_request=True, cancellation_token=d.cancellation_token)
        else:
            m = d.message
            namespace, name = parse_typename(m.target_typename)
            pb = FromFunction.DelayedInvocation(
                target=Address(namespace=namespace, type=name, id=m.target_id), delay_in_ms=d.duration_ms,
            )
            copy_into(pb.argument, m.typed_value)
            if d.cancellation_token is not None:
                pb.cancellation_token = d.cancellation_token
        parts.append(fields.field(b"\x1a", pb.SerializeToString()))
    for e in result.egress:  # outgoing_egresses = 4
        namespace, name = parse_typename(e.typename)
        pb = FromFunction.EgressMessage(egress_namespace=namespace, egress_type=name)
        copy_into(pb.argument, e.typed_value)
        parts.append(fields.field(b"\"", pb.SerializeToString()))
    if not parts:
        return b""
    return fields.field(fields.FROM_FUNCTION_INVOCATION_RESULT, b"".join(parts))
