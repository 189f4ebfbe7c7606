"""StatefulFunctions, ValueSpec, Message and the builders: the official SDK's surface and its errors."""

from datetime import timedelta

import pytest

import pystatefun
from pystatefun import (
    EgressMessage,
    IntType,
    LongType,
    Message,
    SdkAddress,
    StatefulFunctions,
    StringType,
    ValueSpec,
    egress_message_builder,
    kafka_egress_message,
    kinesis_egress_message,
    make_json_type,
    message_builder,
)
from pystatefun.wire.kafka_egress_pb2 import KafkaProducerRecord
from pystatefun.wire.kinesis_egress_pb2 import KinesisEgressRecord

OFFICIAL_EXPORTS = [
    "TypeSerializer", "Type", "simple_type", "ValueSpec", "SdkAddress", "BoolType", "IntType", "FloatType",
    "DoubleType", "LongType", "StringType", "Message", "EgressMessage", "message_builder",
    "egress_message_builder", "kafka_egress_message", "kinesis_egress_message", "Context",
    "StatefulFunctions", "RequestReplyHandler", "make_protobuf_type", "make_json_type",
]


def test_every_public_name_of_the_official_sdk_is_exported():
    for name in OFFICIAL_EXPORTS:
        assert hasattr(pystatefun, name), name
        assert name in pystatefun.__all__


# -- StatefulFunctions ---------------------------------------------------------------------------


def test_bind_registers_and_returns_the_function_unchanged():
    functions = StatefulFunctions()
    spec = ValueSpec("seen", IntType)

    @functions.bind("com.example/greeter", specs=[spec])
    def greeter(context, message):
        pass

    registered = functions.for_typename("com.example/greeter")
    assert registered.fun is greeter and not registered.is_async
    assert registered.specs == (spec,)
    assert "com.example/greeter" in functions and functions.typenames() == ["com.example/greeter"]


def test_register_detects_async_functions_and_replaces_on_reregistration():
    functions = StatefulFunctions()

    async def first(context, message):
        pass

    def second(context, message):
        pass

    functions.register("a/b", first)
    assert functions.for_typename("a/b").is_async
    functions.register("a/b", second)
    assert functions.for_typename("a/b").fun is second


def test_bound_methods_and_callable_objects_can_be_functions():
    class Greeter:
        def handle(self, context, message):
            pass

        async def __call__(self, context, message):
            pass

    functions = StatefulFunctions()
    functions.register("a/method", Greeter().handle)
    functions.register("a/object", Greeter())
    assert functions.for_typename("a/object").is_async


def test_unknown_typename_is_a_key_error_naming_what_is_registered():
    functions = StatefulFunctions()
    functions.register("a/b", lambda context, message: None)
    with pytest.raises(KeyError) as e:
        functions.for_typename("a/c")
    assert "no function is registered for type 'a/c' (registered: a/b)" in str(e.value)


@pytest.mark.parametrize("typename,reason", [
    ("greeter", "must have the form 'namespace/name'"),
    ("/greeter", "namespace before the last '/' is empty"),
    ("com.example/", "name after the last '/' is empty"),
])
def test_invalid_typename_is_refused_at_registration(typename, reason):
    with pytest.raises(ValueError, match=reason):
        StatefulFunctions().register(typename, lambda context, message: None)


def test_function_with_the_wrong_signature_is_refused_with_what_to_change():
    def one(context):
        pass

    def three(context, message, other):
        pass

    for fun in (one, three):
        with pytest.raises(ValueError, match=r"does not expect a context and a message.*def \w+\(context, message\)"):
            StatefulFunctions().register("a/b", fun)
    with pytest.raises(ValueError, match="function instance must be provided"):
        StatefulFunctions().register("a/b", None)
    with pytest.raises(TypeError, match="is not callable"):
        StatefulFunctions().register("a/b", 42)


def test_duplicate_spec_names_are_refused():
    with pytest.raises(ValueError, match="duplicate registered value name: 'x' is declared twice for function 'a/b'"):
        StatefulFunctions().register("a/b", lambda c, m: None, [ValueSpec("x", IntType), ValueSpec("x", StringType)])


def test_specs_must_be_value_specs():
    with pytest.raises(TypeError, match="must be ValueSpec objects"):
        StatefulFunctions().register("a/b", lambda c, m: None, ["x"])


# -- ValueSpec -------------------------------------------------------------------------------------


def test_value_spec_expiration():
    assert (ValueSpec("a", IntType).duration, ValueSpec("a", IntType).after_call) == (0, False)
    call = ValueSpec("a", IntType, expire_after_call=timedelta(seconds=2))
    assert (call.duration, call.after_call, call.after_write) == (2000, True, False)
    write = ValueSpec("a", IntType, expire_after_write=timedelta(milliseconds=1500))
    assert (write.duration, write.after_call, write.after_write) == (1500, False, True)
    with pytest.raises(ValueError, match="not both"):
        ValueSpec("a", IntType, expire_after_call=timedelta(1), expire_after_write=timedelta(1))


@pytest.mark.parametrize("name,reason", [
    ("", "name can not be missing"),
    ("1abc", "invalid name"),
    ("with space", "invalid name"),
    ("class", "Python keyword"),
    ("Seen", "Only lower case names are allowed.*use 'seen'"),
])
def test_value_spec_name_rules(name, reason):
    with pytest.raises(ValueError, match=reason):
        ValueSpec(name, IntType)


def test_value_spec_type_must_be_a_statefun_type():
    with pytest.raises(TypeError, match="is not a StateFun type"):
        ValueSpec("a", int)
    with pytest.raises(ValueError, match="type can not be missing"):
        ValueSpec("a", None)


# -- Message and builders --------------------------------------------------------------------------


@pytest.mark.parametrize("keyword,value,is_name,as_name", [
    ("int_value", 7, "is_int", "as_int"),
    ("long_value", 2**40, "is_long", "as_long"),
    ("str_value", "hi", "is_string", "as_string"),
    ("float_value", 0.5, "is_float", "as_float"),
    ("double_value", 0.25, "is_double", "as_double"),
    ("bool_value", True, "is_bool", "as_bool"),
])
def test_message_builder_with_builtin_values(keyword, value, is_name, as_name):
    message = message_builder("com.example/f", "id-1", **{keyword: value})
    assert (message.target_typename, message.target_id) == ("com.example/f", "id-1")
    assert getattr(message, is_name)()
    assert getattr(message, as_name)() == value
    others = {"is_int", "is_long", "is_string", "is_float", "is_double", "is_bool"} - {is_name}
    assert not any(getattr(message, other)() for other in others)


def test_message_builder_with_a_custom_type():
    doc = make_json_type("com.example/Doc")
    message = message_builder("com.example/f", "x", value={"a": 1}, value_type=doc)
    assert message.is_type(doc) and message.value_typename() == "com.example/Doc"
    assert message.as_type(doc) == {"a": 1}
    assert message.raw_value() == b'{"a": 1}'


def test_message_builder_errors():
    with pytest.raises(TypeError, match="Wrong number of value keywords"):
        message_builder("a/b", "x")
    with pytest.raises(ValueError, match="Unknown value keyword 'integer'"):
        message_builder("a/b", "x", integer=1)
    with pytest.raises(ValueError, match="value can not be missing"):
        message_builder("a/b", "x", int_value=None)
    with pytest.raises(ValueError, match="specify the type explicitly"):
        message_builder("a/b", "x", value=1)
    with pytest.raises(ValueError, match="target_id can not be missing"):
        message_builder("a/b", "", int_value=1)


def test_message_without_value():
    from pystatefun.wire.request_reply_pb2 import TypedValue

    message = Message("a/b", "x", TypedValue(typename="io.statefun.types/int", has_value=False))
    assert message.is_int() and message.as_int() is None and message.raw_value() is None


def test_egress_message_builder():
    message = egress_message_builder("com.example/out", "hello", StringType)
    assert isinstance(message, EgressMessage)
    assert message.typename == "com.example/out" and message.value_typename() == StringType.typename
    assert StringType.serializer().deserialize(message.raw_value()) == "hello"
    with pytest.raises(ValueError, match="target typename is missing"):
        egress_message_builder("", "x", StringType)


@pytest.mark.parametrize("value,expected", [
    ("héllo", "héllo".encode()),
    (b"\x00\x01", b"\x00\x01"),
    (bytearray(b"ab"), b"ab"),
    (258, b"\x00\x00\x01\x02"),
    (1.5, b"\x3f\xf8\x00\x00\x00\x00\x00\x00"),
])
def test_kafka_egress_message_value_encodings(value, expected):
    message = kafka_egress_message("com.example/kafka", "topic-a", value, key="k1")
    assert message.value_typename() == "type.googleapis.com/io.statefun.sdk.egress.KafkaProducerRecord"
    record = KafkaProducerRecord.FromString(message.raw_value())
    assert (record.topic, record.key, record.value_bytes) == ("topic-a", "k1", expected)


def test_kafka_egress_message_with_value_type_and_without_key():
    record = KafkaProducerRecord.FromString(kafka_egress_message("a/k", "t", 5, value_type=LongType).raw_value())
    assert record.value_bytes == LongType.serializer().serialize(5) and record.key == ""
    with pytest.raises(ValueError, match="topic is missing"):
        kafka_egress_message("a/k", "", "v")
    with pytest.raises(TypeError, match="Unable to convert value to bytes"):
        kafka_egress_message("a/k", "t", object())


def test_kinesis_egress_message():
    message = kinesis_egress_message("com.example/kinesis", "stream-a", "v", "pk", explicit_hash_key="42")
    assert message.value_typename() == "type.googleapis.com/io.statefun.sdk.egress.KinesisEgressRecord"
    record = KinesisEgressRecord.FromString(message.raw_value())
    assert (record.stream, record.partition_key, record.explicit_hash_key, record.value_bytes) == ("stream-a", "pk", "42", b"v")
    with pytest.raises(ValueError, match="Missing partition key"):
        kinesis_egress_message("a/k", "s", "v", None)
    with pytest.raises(TypeError, match="Unable to convert value to bytes"):
        kinesis_egress_message("a/k", "s", 5, "pk")


def test_sdk_address_is_a_value():
    assert SdkAddress("a", "b", "c", "a/b") == SdkAddress("a", "b", "c", "a/b")
    assert hash(SdkAddress("a", "b", "c", "a/b")) == hash(SdkAddress("a", "b", "c", "a/b"))
