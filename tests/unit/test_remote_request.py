"""The runtime's ToFunction encoder (runtime/invokers.py, ``_request``) writes the request field by field:
its bytes must be exactly those of the message built with the protobuf classes and serialized, whatever
the batch holds (no state, absent values, empty and non-ASCII strings, long values, callers or not)."""

from __future__ import annotations

import pytest

from pystatefun.runtime.invokers import _request
from pystatefun.sdk.address import SdkAddress
from pystatefun.wire.request_reply_pb2 import Address, ToFunction, TypedValue


def reference(address: SdkAddress, state: dict, invocations: list) -> bytes:
    batch = ToFunction.InvocationBatchRequest(target=Address(namespace=address.namespace, type=address.name, id=address.id))
    for name, value in state.items():
        if value is None:
            batch.state.add(state_name=name)
        else:
            batch.state.add(state_name=name, state_value=value)
    for caller, argument in invocations:
        if caller is None:
            batch.invocations.add(argument=argument)
        else:
            batch.invocations.add(caller=Address(namespace=caller.namespace, type=caller.name, id=caller.id),
                                  argument=argument)
    return ToFunction(invocation=batch).SerializeToString()


def sdk_address(namespace: str, name: str, id: str) -> SdkAddress:
    return SdkAddress(namespace, name, id, f"{namespace}/{name}")


TARGET = sdk_address("com.example", "counter", "user-7")
INT = TypedValue(typename="io.statefun.types/int", has_value=True, value=b"\x08\x2a")
EMPTY = TypedValue()
LONG = TypedValue(typename="com.example/blob", has_value=True, value=b"x" * 70_000)

CASES = {
    "one message from an ingress": (TARGET, {}, [(None, INT)]),
    "state and a caller": (TARGET, {"count": INT}, [(sdk_address("com.example", "counter", "user-6"), INT)]),
    "absent state values": (TARGET, {"a": None, "b": INT, "c": None}, [(None, INT)]),
    "empty values and an all-empty caller": (TARGET, {"a": EMPTY}, [(sdk_address("", "", ""), EMPTY)]),
    "non-ASCII ids and names": (sdk_address("ns.ü", "fn€", "id-日本"), {"zustand-ä": INT},
                                [(sdk_address("ns.ü", "fn€", "😀"), INT)]),
    "an empty target id": (sdk_address("a", "b", ""), {}, [(None, INT)]),
    "lengths of two and three varint bytes": (sdk_address("a", "b", "i" * 200), {"big": LONG},
                                              [(None, LONG), (TARGET, TypedValue(typename="t" * 130))]),
    "a batch of many": (TARGET, {"count": INT}, [(sdk_address("n", "f", str(i)) if i % 2 else None, INT)
                                                 for i in range(1000)]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_request_bytes_are_the_protobuf_serialization(case: str) -> None:
    address, state, invocations = CASES[case]
    encoded = _request(address, state, invocations)
    assert encoded == reference(address, state, invocations)
    parsed = ToFunction.FromString(encoded).invocation
    assert parsed.target.id == address.id and len(parsed.invocations) == len(invocations)
