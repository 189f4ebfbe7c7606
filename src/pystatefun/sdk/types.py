"""The StateFun type system: a Type names values (``namespace/name``) and serializes them to bytes.

The six built-in types encode a value as its protobuf wrapper message (field 1), byte for byte as the
official SDKs do; their codecs are written out here so the common case skips protobuf objects entirely,
and fall back to the wrapper messages for any encoding other than the canonical one.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
import struct
import typing

from pystatefun.wire import types_pb2
from pystatefun.wire.fields import varint


class TypeSerializer(metaclass=abc.ABCMeta):
    """Serializes values of one type to bytes and back."""

    __slots__ = ()

    # the Python type whose values read back exactly as they were stored, so that a state read after an
    # assignment needs no decoding (sdk/storage.py); None: a read after an assignment decodes the bytes
    _unchanged: type | None = None

    @abc.abstractmethod
    def serialize(self, value: typing.Any) -> bytes:
        """Returns the byte representation of ``value``."""

    @abc.abstractmethod
    def deserialize(self, byte: bytes) -> typing.Any:
        """Returns the value that ``byte`` represents."""


class Type(metaclass=abc.ABCMeta):
    """A StateFun value type: a typename of the form ``namespace/name`` and a serializer."""

    __slots__ = ("typename",)

    def __init__(self, typename: str):
        if not typename:
            raise ValueError("typename can not be missing")
        self.typename = typename

    @abc.abstractmethod
    def serializer(self) -> TypeSerializer:
        """Returns the serializer of this type."""

    def validate(self, value: typing.Any) -> None:
        """Raises TypeError or ValueError if ``value`` can not be a value of this type.

        Called when a state is assigned, so a wrong value fails where it is written rather than when
        the batch is encoded. The default accepts everything; types that know their values override it.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.typename!r})"


class UserTypeSerializer(TypeSerializer):
    """A serializer made of two functions."""

    __slots__ = ("serialize_fn", "deserialize_fn")

    def __init__(self, serialize_fn: typing.Callable[[typing.Any], bytes], deserialize_fn: typing.Callable[[bytes], typing.Any]):
        self.serialize_fn = serialize_fn
        self.deserialize_fn = deserialize_fn

    def serialize(self, value: typing.Any) -> bytes:
        return self.serialize_fn(value)

    def deserialize(self, byte: bytes) -> typing.Any:
        return self.deserialize_fn(byte)


class SimpleType(Type):
    """A user type defined by a serialize and a deserialize function (see ``simple_type``)."""

    __slots__ = ("_ser", "_value_class")

    def __init__(
        self,
        typename: str,
        serialize_fn: typing.Callable[[typing.Any], bytes],
        deserialize_fn: typing.Callable[[bytes], typing.Any],
        value_class: type | None = None,
    ):
        super().__init__(typename)
        if not serialize_fn:
            raise ValueError("serialize_fn is missing")
        if not deserialize_fn:
            raise ValueError("deserialize_fn is missing")
        self._value_class = value_class
        if value_class is not None:
            unchecked = serialize_fn

            def serialize_fn(value: typing.Any) -> bytes:
                self.validate(value)
                return unchecked(value)

        self._ser = UserTypeSerializer(serialize_fn, deserialize_fn)

    def serializer(self) -> TypeSerializer:
        return self._ser

    def validate(self, value: typing.Any) -> None:
        cls = self._value_class
        if cls is not None and not isinstance(value, cls):
            raise TypeError(
                f"type {self.typename!r} holds {cls.__qualname__} values, got {type(value).__qualname__}: "
                f"pass a {cls.__qualname__} instance"
            )


def simple_type(
    typename: str | None = None,
    serialize_fn: typing.Callable[[typing.Any], bytes] | None = None,
    deserialize_fn: typing.Callable[[bytes], typing.Any] | None = None,
) -> Type:
    """Creates a Type from a serialize and a deserialize function.

    ``simple_type("com.example/User", serialize_fn=..., deserialize_fn=...)``
    """
    return SimpleType(typename, serialize_fn, deserialize_fn)


# ---------------------------------------------------------------------------------------------------
# Built-in types


class _BuiltinSerializer(TypeSerializer):
    """Codec of one built-in type. ``serialize`` and ``deserialize`` are the type's own functions, held
    per instance: a state read or a message's ``as_int`` is one call, not two."""

    # slots named like TypeSerializer's abstract methods: they implement them (and abc sees no abstract one left)
    __slots__ = ("serialize", "deserialize", "_unchanged")

    def __init__(self, encode: typing.Callable[[typing.Any], bytes], decode: typing.Callable[[bytes], typing.Any],
                 unchanged: type | None):
        self.serialize = encode
        self.deserialize = decode
        # an int, str or bool reads back equal and of the same type: no need to decode it again (a float
        # does not: float32 rounding, and -0.0 is stored as zero bytes)
        self._unchanged = unchanged


_INT32 = struct.Struct("<i")
_INT64 = struct.Struct("<q")
_FLOAT32 = struct.Struct("<f")
_FLOAT64 = struct.Struct("<d")
_FLOAT32_MAX = float.fromhex("0x1.fffffep+127")

# The value checks follow protobuf's own (which the official SDK runs its values through): integers and
# bools take anything with __index__, floats anything with __float__ or __index__, strings str or UTF-8
# bytes; a float beyond the float32 range becomes an infinity.


def _not_a(what: str, expected: str, value) -> TypeError:
    return TypeError(f"{what} values must be {expected}, got {type(value).__qualname__} {value!r}")


def _as_integer(value, bits: int, what: str) -> int:
    if not hasattr(value, "__index__"):
        raise _not_a(what, "int", value)
    value = int(value)
    limit = 1 << (bits - 1)
    if not -limit <= value < limit:
        raise ValueError(f"{value} is out of range for {what} (a signed {bits}-bit integer); use LongType")
    return value


def _as_double(value, what: str = "DoubleType") -> float:
    if not (hasattr(value, "__float__") or hasattr(value, "__index__")):
        raise _not_a(what, "float or int", value)
    return float(value)


def _as_float32(value) -> float:
    value = _as_double(value, "FloatType")
    if value > _FLOAT32_MAX:
        return math.inf
    if value < -_FLOAT32_MAX:
        return -math.inf
    return _FLOAT32.unpack(_FLOAT32.pack(value))[0]


def _as_string(value) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{value!r} is not valid UTF-8; StringType values must be str or UTF-8 bytes") from None
    if not isinstance(value, str):
        raise _not_a("StringType", "str", value)
    return value


def _encode_bool(value) -> bytes:
    if not hasattr(value, "__index__"):
        raise _not_a("BoolType", "bool", value)
    return b"\x08\x01" if value else b""


def _decode_bool(byte: bytes) -> bool:
    return byte == b"\x08\x01" or types_pb2.BooleanWrapper.FromString(byte).value


def _encode_int(value) -> bytes:
    if type(value) is not int or not -0x8000_0000 <= value <= 0x7FFF_FFFF:  # the common case skips the call
        value = _as_integer(value, 32, "IntType")
    return b"\x0d" + _INT32.pack(value) if value else b""


def _decode_int(byte: bytes) -> int:
    if len(byte) == 5 and byte[0] == 0x0D:
        return _INT32.unpack_from(byte, 1)[0]
    return types_pb2.IntWrapper.FromString(byte).value


def _encode_long(value) -> bytes:
    if type(value) is not int or not -0x8000_0000_0000_0000 <= value <= 0x7FFF_FFFF_FFFF_FFFF:
        value = _as_integer(value, 64, "LongType")
    return b"\x09" + _INT64.pack(value) if value else b""


def _decode_long(byte: bytes) -> int:
    if len(byte) == 9 and byte[0] == 0x09:
        return _INT64.unpack_from(byte, 1)[0]
    return types_pb2.LongWrapper.FromString(byte).value


def _encode_float(value) -> bytes:
    value = _as_float32(value)
    # like the official Python SDK, every zero (-0.0 and float32 underflow included) is zero bytes
    return b"\x0d" + _FLOAT32.pack(value) if value else b""


def _decode_float(byte: bytes) -> float:
    if len(byte) == 5 and byte[0] == 0x0D:
        return _plain_float(_FLOAT32.unpack_from(byte, 1)[0])
    return _plain_float(types_pb2.FloatWrapper.FromString(byte).value)


def _encode_double(value) -> bytes:
    value = _as_double(value)
    return b"\x09" + _FLOAT64.pack(value) if value else b""


def _decode_double(byte: bytes) -> float:
    if len(byte) == 9 and byte[0] == 0x09:
        return _plain_float(_FLOAT64.unpack_from(byte, 1)[0])
    return _plain_float(types_pb2.DoubleWrapper.FromString(byte).value)


def _plain_float(value: float) -> float:
    """A decoded float as the official SDK reads it: any zero is 0.0, any NaN is math.nan."""
    if value != value:
        return math.nan
    return value or 0.0


def _encode_string(value) -> bytes:
    try:
        data = _as_string(value).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{value!r} is not a valid unicode string and can't be encoded in UTF-8") from None
    if not data:
        return b""
    return b"\x0a" + varint(len(data)) + data


def _decode_string(byte: bytes) -> str:
    if len(byte) >= 2 and byte[0] == 0x0A and byte[1] < 0x80 and byte[1] == len(byte) - 2:
        return byte[2:].decode("utf-8")
    return types_pb2.StringWrapper.FromString(byte).value


class BuiltinType(Type):
    """One of the six StateFun built-in types (``io.statefun.types/*``)."""

    __slots__ = ("_ser",)

    def __init__(self, typename: str, encode: typing.Callable[[typing.Any], bytes],
                 decode: typing.Callable[[bytes], typing.Any], unchanged: type | None = None):
        super().__init__(typename)
        self._ser = _BuiltinSerializer(encode, decode, unchanged)

    def serializer(self) -> TypeSerializer:
        return self._ser

    def validate(self, value: typing.Any) -> None:
        self._ser.serialize(value)  # encoding is the check: cheap, and it raises on a wrong value


BoolType = BuiltinType("io.statefun.types/bool", _encode_bool, _decode_bool, unchanged=bool)
IntType = BuiltinType("io.statefun.types/int", _encode_int, _decode_int, unchanged=int)
FloatType = BuiltinType("io.statefun.types/float", _encode_float, _decode_float)
LongType = BuiltinType("io.statefun.types/long", _encode_long, _decode_long, unchanged=int)
DoubleType = BuiltinType("io.statefun.types/double", _encode_double, _decode_double)
StringType = BuiltinType("io.statefun.types/string", _encode_string, _decode_string, unchanged=str)

BUILTIN_TYPES: dict[str, BuiltinType] = {
    t.typename: t for t in (BoolType, IntType, FloatType, LongType, DoubleType, StringType)
}


# ---------------------------------------------------------------------------------------------------
# JSON and protobuf types


def _serialize_json_utf8(obj: typing.Any) -> bytes:
    # Same bytes as the official SDK: json.dumps with ensure_ascii=False, encoded as UTF-8.
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def make_json_type(typename: str, model: typing.Any = None) -> Type:
    """Creates a Type whose values are JSON documents.

    Without ``model`` values are what ``json.loads`` returns (dicts, lists, ...), as in the official SDK.
    With ``model`` -- a pydantic model class, a dataclass, or any type pydantic can validate, such as
    ``list[Item]`` -- values are instances of it: ``message.as_type(t)`` and state reads return the model,
    and assigning anything else to a state of this type is an error.
    """
    if model is None:
        return simple_type(typename=typename, serialize_fn=_serialize_json_utf8, deserialize_fn=json.loads)
    if isinstance(model, type) and hasattr(model, "model_validate_json") and hasattr(model, "model_dump_json"):
        # a pydantic model: its own JSON codec
        return SimpleType(
            typename,
            serialize_fn=lambda value: value.model_dump_json().encode("utf-8"),
            deserialize_fn=model.model_validate_json,
            value_class=model,
        )
    import pydantic  # dataclasses and generic types go through a TypeAdapter, nested models included

    adapter = pydantic.TypeAdapter(model)
    value_class = model if isinstance(model, type) and dataclasses.is_dataclass(model) else None
    return SimpleType(
        typename,
        serialize_fn=adapter.dump_json,
        deserialize_fn=adapter.validate_json,
        value_class=value_class,
    )


def make_protobuf_type(cls: type, namespace: str | None = None) -> Type:
    """Creates a Type for a generated protobuf message class.

    Its typename is ``<namespace or 'type.googleapis.com'>/<the message's full name>``.
    """
    if not cls:
        raise ValueError("The Protobuf generated class is missing.")
    name = cls.DESCRIPTOR.full_name
    if not name:
        raise TypeError("Unable to deduce the Protobuf Message full name.")
    return SimpleType(
        f"{namespace or 'type.googleapis.com'}/{name}",
        serialize_fn=lambda value: value.SerializeToString(),
        deserialize_fn=cls.FromString,
        value_class=cls,
    )
