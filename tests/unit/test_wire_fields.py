"""The two messages of a remote call are written field by field (wire/fields.py): the runtime's ToFunction
(runtime/invokers.py, ``_request``) and the function endpoint's FromFunction (serving/handler.py,
``_encode_result``). Their bytes must be exactly those of the message built with the protobuf classes and
serialized, whatever they hold (no state, absent values, empty and non-ASCII strings, long values,
callers or not, every kind of effect). The values made in the process (wire/values.py, PlainTypedValue)
must be the protobuf TypedValue in bytes and equality, there and in the Kafka backend's log records."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pystatefun import IntType, StatefulFunctions, StringType, ValueSpec, egress_message_builder, message_builder
from pystatefun.backends.kafka.records import decode_message, encode_message, encode_state
from pystatefun.runtime.envelope import Envelope, address
from pystatefun.runtime.epoch import StoredValue
from pystatefun.runtime.invokers import _request
from pystatefun.sdk.address import SdkAddress, parse_typename
from pystatefun.sdk.batch import Batch, BatchResult
from pystatefun.serving.handler import _encode_result
from pystatefun.wire import fields
from pystatefun.wire.request_reply_pb2 import Address, FromFunction, ToFunction, TypedValue
from pystatefun.wire.values import PlainTypedValue, copy_into


def as_proto(value) -> TypedValue:
    """A value (made here or parsed) as the protobuf class, for the reference messages built with it."""
    return TypedValue(typename=value.typename, has_value=value.has_value, value=value.value)


def reference(address: SdkAddress, state: dict, invocations: list) -> bytes:
    batch = ToFunction.InvocationBatchRequest(target=Address(namespace=address.namespace, type=address.name, id=address.id))
    for name, value in state.items():
        if value is None:
            batch.state.add(state_name=name)
        else:
            batch.state.add(state_name=name, state_value=as_proto(value))
    for caller, argument in invocations:
        if caller is None:
            batch.invocations.add(argument=as_proto(argument))
        else:
            batch.invocations.add(caller=Address(namespace=caller.namespace, type=caller.name, id=caller.id),
                                  argument=as_proto(argument))
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
    "values made here (plain) and parsed (protobuf) together": (
        TARGET, {"a": PlainTypedValue(INT.typename, True, INT.value), "b": INT, "c": PlainTypedValue()},
        [(None, PlainTypedValue("t" * 130, True, b"v" * 300)), (TARGET, INT)]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_request_bytes_are_the_protobuf_serialization(case: str) -> None:
    address, state, invocations = CASES[case]
    encoded = _request(address, state, invocations)
    assert encoded == reference(address, state, invocations)
    parsed = ToFunction.FromString(encoded).invocation
    assert parsed.target.id == address.id and len(parsed.invocations) == len(invocations)


PLAIN_VALUES = {
    "a built-in type's value": ("io.statefun.types/int", True, b"\x08\x2a"),
    "absent (has_value false)": ("io.statefun.types/int", False, b""),
    "has_value without bytes (an empty string)": ("io.statefun.types/string", True, b""),
    "all defaults": ("", False, b""),
    "bytes without a typename": ("", True, b"\x00\xff"),
    "non-ASCII typename": ("com.exämple/日本", True, b"x"),
    "two- and three-byte lengths": ("t" * 130, True, b"v" * 70_000),
}


@pytest.mark.parametrize("case", PLAIN_VALUES, ids=list(PLAIN_VALUES))
def test_a_plain_typed_value_is_the_protobuf_message_in_bytes_and_equality(case: str) -> None:
    typename, has_value, value = PLAIN_VALUES[case]
    plain, proto = PlainTypedValue(typename, has_value, value), TypedValue(typename=typename, has_value=has_value, value=value)
    assert plain.SerializeToString() == proto.SerializeToString()
    assert TypedValue.FromString(plain.SerializeToString()) == proto
    assert plain == proto and proto == plain and not plain != proto
    for source in (plain, proto):  # into a protobuf message's TypedValue field: the same bytes and fields
        record = FromFunction.EgressMessage(egress_namespace="n")
        copy_into(record.argument, source)
        assert record.argument == proto
        assert record.SerializeToString() == FromFunction.EgressMessage(egress_namespace="n", argument=proto).SerializeToString()
    assert plain != PlainTypedValue(typename + "x", has_value, value) and plain != "not a value"


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16_383, 16_384, 2**21, 2**35 + 5])
def test_varints_are_protobufs(n: int) -> None:
    encoded = FromFunction.DelayedInvocation(delay_in_ms=n).SerializeToString()  # field 1, a varint
    assert b"\x08" + fields.varint(n) == (encoded or b"\x08\x00")


def reference_result(result: BatchResult) -> bytes:
    """The FromFunction as the protobuf classes build it."""
    reply = FromFunction()
    response = reply.invocation_result
    for name, value in result.mutations:
        if value is None:
            response.state_mutations.add(mutation_type=FromFunction.PersistedValueMutation.DELETE, state_name=name)
        else:
            response.state_mutations.add(mutation_type=FromFunction.PersistedValueMutation.MODIFY, state_name=name,
                                         state_value=as_proto(value))
    for message in result.messages:
        namespace, name = parse_typename(message.target_typename)
        response.outgoing_messages.add(target=Address(namespace=namespace, type=name, id=message.target_id),
                                       argument=as_proto(message.typed_value))
    for d in result.delayed:
        if d.is_cancellation:
            response.delayed_invocations.add(is_cancellation_request=True, cancellation_token=d.cancellation_token)
        else:
            m = d.message
            namespace, name = parse_typename(m.target_typename)
            item = response.delayed_invocations.add(target=Address(namespace=namespace, type=name, id=m.target_id),
                                                    delay_in_ms=d.duration_ms, argument=as_proto(m.typed_value))
            if d.cancellation_token is not None:
                item.cancellation_token = d.cancellation_token
    for e in result.egress:
        namespace, name = parse_typename(e.typename)
        response.outgoing_egresses.add(egress_namespace=namespace, egress_type=name, argument=as_proto(e.typed_value))
    return reply.SerializeToString()


def everything(context, message) -> None:
    """Every kind of effect, chosen by the message."""
    what = message.as_string()
    storage = context.storage
    if "write" in what:
        storage.count = (storage.count or 0) + 1
        storage.name = "ünïcode-" + "n" * 200
    if "delete" in what:
        del storage.count
    if "send" in what:
        context.send(message_builder("com.example/other", "id-日本", int_value=7))
        context.send(message_builder("ns/fn", "x" * 300, str_value="y" * 70_000))
    if "delay" in what:
        context.send_after(timedelta(seconds=3), message_builder("com.example/other", "a", int_value=1))
        context.send_after(timedelta(milliseconds=0), message_builder("com.example/other", "b", int_value=2),
                           cancellation_token="token-1")
        context.cancel_delayed_message("token-2")
    if "egress" in what:
        context.send_egress(egress_message_builder("com.example/sink", "record €", StringType))


EFFECTS = ["nothing", "write", "write delete", "delete", "send", "delay", "egress",
           "write send delay egress", "write delete send delay egress"]


@pytest.mark.parametrize("what", EFFECTS)
def test_the_reply_bytes_are_the_protobuf_serialization(what: str) -> None:
    functions = StatefulFunctions()
    functions.register("com.example/everything", everything,
                       specs=[ValueSpec("count", IntType), ValueSpec("name", StringType)])
    function = functions.for_typename("com.example/everything")
    stored = {"count": None, "name": None} if what != "delete" else {
        "count": TypedValue(typename=IntType.typename, has_value=True, value=IntType.serializer().serialize(4)),
        "name": None}
    batch = Batch(function, SdkAddress("com.example", "everything", "me", "com.example/everything"), stored)
    result = batch.run([(None, TypedValue(typename=StringType.typename, has_value=True,
                                          value=StringType.serializer().serialize(what)))])
    encoded = _encode_result(result)
    assert encoded == reference_result(result)
    assert (encoded == b"") == (what == "nothing")


@pytest.mark.parametrize("case", PLAIN_VALUES, ids=list(PLAIN_VALUES))
def test_the_kafka_log_records_of_a_plain_value_are_those_of_the_protobuf_one(case: str) -> None:
    """The Kafka backend writes messages and state values into protobuf records (copy_into): a value made
    here gives the same bytes as the protobuf message, and reads back equal."""
    typename, has_value, value = PLAIN_VALUES[case]
    plain, proto = PlainTypedValue(typename, has_value, value), TypedValue(typename=typename, has_value=has_value, value=value)
    target, caller = address("com.example/counter", "k-1"), address("com.example/other", "k-2")
    assert encode_message(Envelope(target, caller, plain, None, "00-trace")) == encode_message(Envelope(target, caller, proto, None, "00-trace"))
    assert decode_message(encode_message(Envelope(target, None, plain))).value == plain
    assert encode_state(StoredValue(plain, 1234)) == encode_state(StoredValue(proto, 1234))
