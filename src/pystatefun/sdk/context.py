"""The Context a function receives: its address, its caller, its storage, and the effects it asks for.

Effects are buffered in order and handed back when the batch ends; nothing is sent while the function
runs, so a batch that raises has no effects at all.
"""

from __future__ import annotations

import abc
import typing
from dataclasses import dataclass
from datetime import timedelta

from pystatefun.sdk.address import SdkAddress
from pystatefun.sdk.messages import EgressMessage, Message, message_builder


@dataclass(slots=True)
class DelayedMessage:
    """A message to deliver after ``duration_ms``, or (``is_cancellation``) a cancellation by token."""

    is_cancellation: bool
    duration_ms: int = 0
    message: Message | None = None
    cancellation_token: str | None = None


class Context(abc.ABC):
    """What a function can see and do while it handles a message."""

    __slots__ = ()

    @property
    @abc.abstractmethod
    def address(self) -> SdkAddress:
        """The address of the function instance that is running."""

    @property
    @abc.abstractmethod
    def storage(self) -> typing.Any:
        """The address-scoped state: one attribute per declared ValueSpec."""

    @property
    @abc.abstractmethod
    def caller(self) -> SdkAddress | None:
        """The address of the function that sent the message, or None when it came from an ingress."""

    @abc.abstractmethod
    def send(self, message: Message) -> None:
        """Sends a message to a function."""

    @abc.abstractmethod
    def send_after(self, duration: timedelta, message: Message, cancellation_token: str = "") -> None:
        """Sends a message after ``duration``; a non-empty ``cancellation_token`` lets it be cancelled."""

    @abc.abstractmethod
    def cancel_delayed_message(self, cancellation_token: str) -> None:
        """Cancels the delayed message this address sent with ``cancellation_token``.

        Best effort: a message that was already delivered, or an unknown token, is a no-op.
        """

    @abc.abstractmethod
    def send_egress(self, message: EgressMessage) -> None:
        """Sends a record to an egress."""

    def reply(self, **value: typing.Any) -> None:
        """Sends a message back to the caller: ``context.reply(value=receipt, value_type=RECEIPT)`` or
        ``context.reply(str_value="done")`` (the keywords of ``message_builder``).

        The caller may be another function, or an ingress request waiting for its answer (pystatefun's
        request/reply: the first message to such a caller is the HTTP response). The same as
        ``context.send(message_builder(context.caller.typename, context.caller.id, ...))``.
        """
        caller = self.caller
        if caller is None:
            raise ValueError(
                "reply(): this message has no caller to answer; it came from an ingress that does not wait "
                "for a reply (send with ?wait=SECONDS for request/reply) -- use send_egress() to emit results"
            )
        self.send(message_builder(caller.typename, caller.id, **value))


class InvocationContext(Context):
    """The Context of one batch of invocations for one address; it collects the batch's effects."""

    __slots__ = ("_address", "_storage", "_caller", "messages", "delayed", "egress")

    def __init__(self, address: SdkAddress, storage: typing.Any):
        self._address = address
        self._storage = storage
        self._caller: SdkAddress | None = None
        self.messages: list[Message] = []
        self.delayed: list[DelayedMessage] = []
        self.egress: list[EgressMessage] = []

    @property
    def address(self) -> SdkAddress:
        return self._address

    @property
    def storage(self) -> typing.Any:
        return self._storage

    @property
    def caller(self) -> SdkAddress | None:
        return self._caller

    def send(self, message: Message) -> None:
        if not isinstance(message, Message):
            raise TypeError(
                f"send() takes a Message, got {type(message).__qualname__}; build one with "
                "message_builder(target_typename, target_id, ...). For egresses use send_egress()."
            )
        self.messages.append(message)

    def send_after(self, duration: timedelta, message: Message, cancellation_token: str = "") -> None:
        if not isinstance(duration, timedelta):
            raise TypeError(f"send_after() takes a datetime.timedelta delay, got {duration!r}")
        if not isinstance(message, Message):
            raise TypeError(
                f"send_after() takes a Message, got {type(message).__qualname__}; build one with "
                "message_builder(target_typename, target_id, ...)"
            )
        ms = int(duration.total_seconds() * 1000.0)
        if ms < 0:
            raise ValueError(f"send_after() needs a delay of zero or more, got {duration}")
        if cancellation_token is not None and not isinstance(cancellation_token, str):
            raise TypeError(f"a cancellation token must be a str, got {cancellation_token!r}")
        self.delayed.append(DelayedMessage(False, ms, message, cancellation_token))

    def cancel_delayed_message(self, cancellation_token: str) -> None:
        if not isinstance(cancellation_token, str):
            raise TypeError(f"a cancellation token must be a str, got {cancellation_token!r}")
        if not cancellation_token:
            raise ValueError(
                f"cancel_delayed_message() needs the non-empty token given to send_after(), got {cancellation_token!r}"
            )
        self.delayed.append(DelayedMessage(True, cancellation_token=cancellation_token))

    def send_egress(self, message: EgressMessage) -> None:
        if not isinstance(message, EgressMessage):
            raise TypeError(
                f"send_egress() takes an EgressMessage, got {type(message).__qualname__}; build one with "
                "egress_message_builder(...), kafka_egress_message(...) or kinesis_egress_message(...)"
            )
        self.egress.append(message)
