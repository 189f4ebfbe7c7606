"""PlainTypedValue: the values this process makes, as a plain object with the wire's TypedValue fields.

Every message a function sends and every state value it writes is a TypedValue (typename, has_value,
value). Made as protobuf (upb) messages, each costs about 0.45 µs to build and 80 ns per field read, and
the embedded path made two per message and read them five times: about a tenth of its CPU (measured on
runtime_chain's one-message calls, docs/benchmarks.md). A PlainTypedValue has the same three fields as
slots, reads like the protobuf message, compares equal to one with the same fields, and serializes to
the same bytes, so code that reads values takes either: the SDK's builders make plain ones, what
protobuf parses (a remote function's answer, the store, the Kafka log) stays protobuf. A protobuf message
that embeds a value gets it with ``copy_into``.
"""

from __future__ import annotations

import typing

from pystatefun.wire.fields import field
from pystatefun.wire.request_reply_pb2 import TypedValue


class PlainTypedValue:
    """A TypedValue as a plain object: ``typename``, ``has_value`` and ``value`` (the serialized bytes)."""

    __slots__ = ("typename", "has_value", "value")

    def __init__(self, typename: str = "", has_value: bool = False, value: bytes = b""):
        self.typename = typename
        self.has_value = has_value
        self.value = value

    def SerializeToString(self) -> bytes:  # noqa: N802 - the protobuf message's name, which callers use
        """The protobuf wire bytes of the TypedValue (fields in number order, proto3 defaults left out)."""
        head = _HEADS.get(self.typename) if self.has_value else None  # typename = 1, has_value = 2
        if head is None:
            head = _head(self.typename, self.has_value)
        data = self.value
        return head + field(b"\x1a", data) if data else head  # value = 3

    def __eq__(self, other: object) -> bool:
        try:
            return (self.typename == other.typename and self.has_value == other.has_value  # type: ignore[attr-defined]
                    and self.value == other.value)  # type: ignore[attr-defined]
        except AttributeError:
            return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the protobuf message

    def __repr__(self) -> str:
        return f"TypedValue(typename={self.typename!r}, has_value={self.has_value!r}, value={self.value!r})"


AnyTypedValue = typing.Union[TypedValue, PlainTypedValue]
"""A value as the runtime and the SDK handle it: made here (plain) or parsed (protobuf)."""


# the fields before the value of a value that has one, per typename: what most values of a process share
_HEADS: dict[str, bytes] = {}
MAX_HEADS = 4096


def _head(typename: str, has_value: bool) -> bytes:
    head = (field(b"\n", typename.encode()) if typename else b"") + (b"\x10\x01" if has_value else b"")
    if has_value and len(_HEADS) < MAX_HEADS:  # bounded: typenames come from the application and its ingresses
        _HEADS[typename] = head
    return head


def copy_into(field: TypedValue, value: AnyTypedValue) -> None:
    """Sets the TypedValue field of a protobuf message to ``value``: its three fields set one by one,
    which is faster than making a protobuf TypedValue of it and handing that to the message's
    constructor (about 1.3 against 2.2 µs for a log record of the Kafka backend)."""
    field.typename = value.typename
    field.has_value = value.has_value
    field.value = value.value
