"""Running one batch: the invocations for one address, applied in order over one storage.

This is the single place where a function is called. The remote handler, the test harness and the
embedded runtime each turn their input into (state, invocations) and take the BatchResult back.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from pystatefun.sdk.address import SdkAddress
from pystatefun.sdk.context import InvocationContext
from pystatefun.sdk.functions import StatefulFunction
from pystatefun.sdk.messages import Message
from pystatefun.wire.request_reply_pb2 import TypedValue

Invocation = tuple[typing.Optional[SdkAddress], TypedValue]
"""(caller or None, the message's value)."""


@dataclass(slots=True)
class BatchResult:
    """The effects of a batch, in the order the function asked for them, and its net state changes."""

    context: InvocationContext
    mutations: list[tuple[str, TypedValue | None]]  # (state name, new value, or None when deleted)


class Batch:
    """A batch ready to run: the function, the address, and a storage over the received state."""

    __slots__ = ("function", "context", "cells")

    def __init__(
        self,
        function: StatefulFunction,
        address: SdkAddress,
        state: typing.Mapping[str, TypedValue | None],
    ):
        storage, self.cells = function.storage_spec.make(address.typename, state)
        self.function = function
        self.context = InvocationContext(address, storage)

    def run(self, invocations: typing.Iterable[Invocation]) -> BatchResult:
        """Runs a synchronous function over every invocation, in order."""
        ctx = self.context
        fun = self.function.fun
        typename, id = ctx.address.typename, ctx.address.id
        for caller, argument in invocations:
            ctx._caller = caller
            fun(ctx, _message(typename, id, argument))
        return self._result()

    async def run_async(self, invocations: typing.Iterable[Invocation]) -> BatchResult:
        """Runs the function (sync or async) over every invocation, in order."""
        if not self.function.is_async:
            return self.run(invocations)
        ctx = self.context
        fun = self.function.fun
        typename, id = ctx.address.typename, ctx.address.id
        for caller, argument in invocations:
            ctx._caller = caller
            await fun(ctx, _message(typename, id, argument))
        return self._result()

    def _result(self) -> BatchResult:
        mutations = []
        for name, cell in self.cells.items():
            changed, value = cell.mutation()
            if changed:
                mutations.append((name, value))
        return BatchResult(self.context, mutations)


def _message(typename: str, id: str, argument: TypedValue) -> Message:
    # The target is the running address itself, already validated: skip Message.__init__'s checks.
    message = Message.__new__(Message)
    message.target_typename = typename
    message.target_id = id
    message.typed_value = argument
    return message

