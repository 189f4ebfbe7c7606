"""Built-in, JSON, model and protobuf types: encodings, validation and round trips."""

import dataclasses
import math
from datetime import timedelta

import pydantic
import pytest
from google.protobuf import timestamp_pb2

from pystatefun import (
    BoolType,
    DoubleType,
    FloatType,
    IntType,
    LongType,
    StringType,
    Type,
    TypeSerializer,
    make_json_type,
    make_protobuf_type,
    simple_type,
)
from pystatefun.wire import types_pb2

WRAPPERS = [
    (BoolType, types_pb2.BooleanWrapper, [True, False]),
    (IntType, types_pb2.IntWrapper, [0, 1, -1, 2**31 - 1, -(2**31), 12345]),
    (LongType, types_pb2.LongWrapper, [0, 1, -1, 2**63 - 1, -(2**63)]),
    (FloatType, types_pb2.FloatWrapper, [0.0, 0.5, -1.25, 3.0e38, float("inf")]),
    (DoubleType, types_pb2.DoubleWrapper, [0.0, 0.1, -1e300, float("-inf")]),
    (StringType, types_pb2.StringWrapper, ["", "a", "héllo wörld ✓", "x" * 127, "y" * 128, "z" * 70000]),
]


@pytest.mark.parametrize("tpe,wrapper,values", WRAPPERS, ids=[w[0].typename for w in WRAPPERS])
def test_builtin_types_encode_as_their_wrapper_message(tpe, wrapper, values):
    for value in values:
        data = tpe.serializer().serialize(value)
        assert data == wrapper(value=value).SerializeToString()
        assert tpe.serializer().deserialize(data) == wrapper.FromString(data).value


def test_zero_values_encode_to_zero_bytes():
    for tpe, zero in [(BoolType, False), (IntType, 0), (LongType, 0), (FloatType, 0.0), (DoubleType, 0.0), (StringType, "")]:
        assert tpe.serializer().serialize(zero) == b""
        assert tpe.serializer().deserialize(b"") == zero


def test_negative_zero_encodes_to_zero_bytes_like_the_official_python_sdk():
    assert FloatType.serializer().serialize(-0.0) == b""
    assert DoubleType.serializer().serialize(-0.0) == b""


def test_nan_round_trips():
    for tpe in (FloatType, DoubleType):
        assert math.isnan(tpe.serializer().deserialize(tpe.serializer().serialize(float("nan"))))


def test_non_canonical_encodings_decode_like_protobuf():
    repeated = b"\x0d\x01\x00\x00\x00\x0d\x02\x00\x00\x00"  # last occurrence wins
    assert IntType.serializer().deserialize(repeated) == 2
    with_unknown_field = b"\x0a\x02hi\x10\x05"
    assert StringType.serializer().deserialize(with_unknown_field) == "hi"


def test_builtin_types_reject_wrong_values_with_a_clear_error():
    with pytest.raises(ValueError, match="out of range for IntType.*use LongType"):
        IntType.serializer().serialize(2**31)
    with pytest.raises(TypeError, match="IntType values must be int"):
        IntType.validate("1")
    with pytest.raises(TypeError, match="StringType values must be str"):
        StringType.validate(3)
    with pytest.raises(TypeError, match="DoubleType values must be float or int"):
        DoubleType.validate("1.0")


def test_float_beyond_float32_range_becomes_infinity_as_in_protobuf():
    assert FloatType.serializer().serialize(1e40) == types_pb2.FloatWrapper(value=1e40).SerializeToString()


def test_simple_type_uses_the_given_functions():
    tpe = simple_type("com.example/Upper", serialize_fn=lambda s: s.upper().encode(), deserialize_fn=bytes.decode)
    assert tpe.typename == "com.example/Upper"
    assert tpe.serializer().serialize("abc") == b"ABC"
    assert tpe.serializer().deserialize(b"XY") == "XY"
    with pytest.raises(ValueError, match="serialize_fn is missing"):
        simple_type("a/b", None, bytes.decode)


def test_custom_type_subclass():
    class Reversed(TypeSerializer):
        def serialize(self, value):
            return value[::-1].encode()

        def deserialize(self, byte):
            return byte.decode()[::-1]

    class ReversedType(Type):
        def __init__(self):
            super().__init__("com.example/reversed")

        def serializer(self):
            return Reversed()

    tpe = ReversedType()
    assert tpe.serializer().deserialize(tpe.serializer().serialize("abc")) == "abc"
    with pytest.raises(ValueError):
        Type.__init__(tpe, "")


def test_json_type_encodes_like_the_official_sdk():
    tpe = make_json_type("com.example/Doc")
    value = {"name": "Zoë", "n": [1, 2]}
    assert tpe.serializer().serialize(value) == '{"name": "Zoë", "n": [1, 2]}'.encode("utf-8")
    assert tpe.serializer().deserialize(b'{"a": 1}') == {"a": 1}


class Item(pydantic.BaseModel):
    sku: str
    quantity: int = 1


class Basket(pydantic.BaseModel):
    items: list[Item] = []


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Line:
    start: Point
    end: Point


def test_json_type_of_a_pydantic_model_returns_the_model():
    tpe = make_json_type("com.example/Basket", Basket)
    basket = Basket(items=[Item(sku="socks", quantity=2)])
    data = tpe.serializer().serialize(basket)
    assert tpe.serializer().deserialize(data) == basket
    with pytest.raises(TypeError, match="holds Basket values, got dict"):
        tpe.validate({"items": []})


def test_json_type_of_a_dataclass_returns_the_dataclass_including_nested_ones():
    tpe = make_json_type("com.example/Line", Line)
    line = Line(Point(0, 1), Point(2, 3))
    decoded = tpe.serializer().deserialize(tpe.serializer().serialize(line))
    assert decoded == line and isinstance(decoded.start, Point)
    with pytest.raises(TypeError, match="holds Line values"):
        tpe.validate(Point(1, 2))


def test_json_type_of_a_generic_type():
    tpe = make_json_type("com.example/Points", list[Point])
    points = [Point(1, 2), Point(3, 4)]
    assert tpe.serializer().deserialize(tpe.serializer().serialize(points)) == points


def test_protobuf_type():
    tpe = make_protobuf_type(timestamp_pb2.Timestamp)
    assert tpe.typename == "type.googleapis.com/google.protobuf.Timestamp"
    assert make_protobuf_type(timestamp_pb2.Timestamp, namespace="com.example").typename == "com.example/google.protobuf.Timestamp"
    ts = timestamp_pb2.Timestamp(seconds=12, nanos=5)
    assert tpe.serializer().deserialize(tpe.serializer().serialize(ts)) == ts
    with pytest.raises(TypeError, match="holds Timestamp values"):
        tpe.validate(timedelta(seconds=1))
