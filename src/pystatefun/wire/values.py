"""PlainTypedValue: the values this process makes, as a plain object with the wire's TypedValue fields.

Every message a function sends and every state value it writes is a TypedValue (typename, has_value,
value). Made as protobuf (upb) messages, each costs about 0.45 µs to build and 70 ns per field read, and
the embedded path made two per message and read them five times: about a tenth of its CPU (measured on
runtime_chain's one-message calls, docs/benchmarks.md). A PlainTypedValue has the same three fields as
slots, reads like the protobuf message, compares equal to one with the same fields, and serializes to
the same bytes, so code that reads values takes either: the SDK's builders make plain ones, what
protobuf parses (a remote function's answer, the store, the Kafka log) stays protobuf. Only a protobuf
message that embeds a value needs the class: ``as_proto``.
"""

from __future__ import annotations

import functools
import typing

from pystatefun.wire.fields import varint
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
        out = _typename_field(self.typename) if self.typename else b""
        if self.has_value:
            out += b"\x10\x01"  # has_value = 2
        data = self.value
        if data:
            out += b"\x1a" + varint(len(data)) + data  # value = 3
        return out

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


@functools.lru_cache(maxsize=4096)
def _typename_field(typename: str) -> bytes:
    encoded = typename.encode()
    return b"\n" + varint(len(encoded)) + encoded  # typename = 1


def as_proto(value: AnyTypedValue) -> TypedValue:
    """The value as the protobuf class, for a protobuf message that embeds it."""
    if isinstance(value, TypedValue):
        return value
    return TypedValue(typename=value.typename, has_value=value.has_value, value=value.value)
