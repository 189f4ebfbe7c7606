"""Running one batch: the invocations for one address, applied in order over one storage.

This is the single place where a function is called. The remote handler, the test harness and the
embedded runtime each turn their input into (state, invocations) and take the BatchResult back.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from pystatefun.sdk.address import SdkAddress
from pystatefun.sdk.context import DelayedMessage, InvocationContext
from pystatefun.sdk.functions import StatefulFunction
from pystatefun.sdk.messages import EgressMessage, Message
from pystatefun.wire.request_reply_pb2 import TypedValue

Invocation = tuple[typing.Optional[SdkAddress], TypedValue]
"""(caller or None, the message's value)."""


@dataclass(slots=True)
class BatchResult:
    """The effects of a batch, each kind in the order the function asked for them, and its net state
    changes. The runtime's invokers return it too, whether the batch ran here or remotely (its Effects)."""

    messages: list[Message]
    delayed: list[DelayedMessage]
    egress: list[EgressMessage]
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
        new_message = Message.__new__
        for caller, argument in invocations:
            ctx.caller = caller
            # the message's target is the running address itself, already validated: no Message.__init__
            message = new_message(Message)
            message.target_typename, message.target_id, message.typed_value = typename, id, argument
            fun(ctx, message)
        return self._result()

    async def run_async(self, invocations: typing.Iterable[Invocation]) -> BatchResult:
        """Runs the function (sync or async) over every invocation, in order."""
        if not self.function.is_async:
            return self.run(invocations)
        ctx = self.context
        fun = self.function.fun
        typename, id = ctx.address.typename, ctx.address.id
        new_message = Message.__new__
        for caller, argument in invocations:
            ctx.caller = caller
            message = new_message(Message)
            message.target_typename, message.target_id, message.typed_value = typename, id, argument
            await fun(ctx, message)
        return self._result()

    def _result(self) -> BatchResult:
        mutations = []
        for name, cell in self.cells.items():
            changed, value = cell.mutation()
            if changed:
                mutations.append((name, value))
        ctx = self.context
        return BatchResult(ctx.messages, ctx.delayed, ctx.egress, mutations)

