"""The Kafka restore's hand-written StateValue encoding gives protobuf's bytes exactly."""

from __future__ import annotations

import pytest

from pystatefun.savepoints.kafka import _encode_state
from pystatefun.wire.log_pb2 import StateValue
from pystatefun.wire.request_reply_pb2 import TypedValue


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16_383, 16_384, 200_000])
@pytest.mark.parametrize("expire_at", [None, 0, 1, 127, 128, 1_767_225_600_000, 2**62, -1])
def test_the_hand_encoding_is_protobufs(size, expire_at):
    value = TypedValue(typename="bench/blob", has_value=True, value=bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    serialized = value.SerializeToString()
    expected = StateValue(value=value, expire_at_ms=expire_at or 0).SerializeToString()
    assert _encode_state(serialized, expire_at) == expected
