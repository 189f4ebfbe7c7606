"""Envelopes: messages on their way to an address, and how addresses map to partitions."""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

from pystatefun.sdk.address import SdkAddress, parse_typename
from pystatefun.wire.request_reply_pb2 import TypedValue


@functools.lru_cache(maxsize=65536)
def address(typename: str, id: str) -> SdkAddress:
    """The (cached, shared) SdkAddress of ``typename``/``id``."""
    namespace, name = parse_typename(typename)
    return SdkAddress(namespace, name, id, typename)


@functools.lru_cache(maxsize=65536)
def partition_of(id: str, partitions: int) -> int:
    """The partition of an address: a stable hash of its id only, as StateFun keys by id.

    All function types sharing an id live in the same partition; crc32 is the same in every process
    and every Python version, so the mapping never changes for an application.
    """
    return zlib.crc32(id.encode("utf-8")) % partitions


@dataclass(slots=True, eq=False)
class Envelope:
    """A message for ``target``: its value, its sender (None from an ingress), and its place in the log.

    ``seq`` is the inbox position once the message is durable; None while it exists only in memory
    inside the current epoch. ``trace`` is the W3C traceparent of the span that sent it, when that span is
    sampled (tracing/spans.py): it travels with the message through every store, so that the message's
    invocation joins its trace; None when tracing is off or the request is not sampled.
    """

    target: SdkAddress
    caller: SdkAddress | None
    value: TypedValue
    seq: int | None = None
    trace: str | None = None

    def encode_value(self) -> bytes:
        return self.value.SerializeToString()


def decode_value(data: bytes) -> TypedValue:
    return TypedValue.FromString(data)
