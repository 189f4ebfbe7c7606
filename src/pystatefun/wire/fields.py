"""Protobuf wire encoding by hand, for the two messages of every remote call: the runtime's ToFunction
(runtime/invokers.py) and the function endpoint's FromFunction (serving/handler.py). ``varint`` and
``field`` also serve the other places that write protobuf bytes by hand: StringType's canonical encoding
(sdk/types.py), a savepoint restore's state values (savepoints/kafka.py) and PlainTypedValue (values.py).

Building those with the generated classes costs a Python-level ``add`` per repeated field and a message
object per address; writing the few fields directly gives the same bytes (fields in number order, proto3
defaults left out, as protobuf serializes them) for about half the CPU. The values in them serialize
themselves: a PlainTypedValue by hand, one parsed from the wire by protobuf. tests/unit/test_wire_fields.py
holds the bytes equal to protobuf's.
"""

from __future__ import annotations

import functools

_ONE_BYTE = [bytes((n,)) for n in range(128)]


def varint(n: int) -> bytes:
    """The base-128 varint of a non-negative int."""
    if n < 128:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or message): its tag, its length, the payload."""
    return tag + varint(len(payload)) + payload


@functools.lru_cache(maxsize=65536)
def address(namespace: str, name: str, id: str) -> bytes:
    """An ``Address`` message: namespace = 1, type = 2, id = 3; empty strings are left out. Cached: every
    remote call writes its target's and its callers' (as runtime/envelope.py caches the addresses)."""
    out = b""
    if namespace:
        encoded = namespace.encode()
        out = b"\n" + varint(len(encoded)) + encoded
    if name:
        encoded = name.encode()
        out += b"\x12" + varint(len(encoded)) + encoded
    if id:
        encoded = id.encode()
        out += b"\x1a" + varint(len(encoded)) + encoded
    return out


# tags (field number << 3 | 2, length-delimited) of the one-of fields of ToFunction and FromFunction
TO_FUNCTION_INVOCATION = b"\xa2\x06"  # ToFunction.invocation = 100
FROM_FUNCTION_INVOCATION_RESULT = b"\xa2\x06"  # FromFunction.invocation_result = 100
