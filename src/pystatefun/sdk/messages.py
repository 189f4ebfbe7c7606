"""Messages between functions and records for egresses, and the builders that make them."""

from __future__ import annotations

import typing

from pystatefun.sdk.types import BoolType, DoubleType, FloatType, IntType, LongType, StringType, Type
from pystatefun.wire.values import AnyTypedValue, PlainTypedValue

_new = object.__new__


def typed_value(typename: str, data: bytes) -> PlainTypedValue:
    """A TypedValue of ``typename`` holding ``data`` (wire/values.py: every message and state write makes
    one). Made without a call to ``__init__``: its slots are set directly."""
    tv = _new(PlainTypedValue)
    tv.typename = typename
    tv.has_value = True
    tv.value = data
    return tv


def to_typed_value(tpe: Type, value: typing.Any) -> PlainTypedValue:
    """Serializes ``value`` with ``tpe`` into the TypedValue that carries it on the wire.

    Serializing checks the value (built-in and model types raise on a wrong one), so no separate
    ``validate`` call is needed here."""
    if value is None:
        return PlainTypedValue(tpe.typename, False)
    return typed_value(tpe.typename, tpe.serializer().serialize(value))


# the built-in types' serializers, for the as_<type> methods (as_type(IntType) with two calls less)
_INT, _BOOL, _LONG, _STRING, _FLOAT, _DOUBLE = (
    t.serializer() for t in (IntType, BoolType, LongType, StringType, FloatType, DoubleType))


class Message:
    """A message to (or, inside a function, for) a function instance."""

    __slots__ = ("target_typename", "target_id", "typed_value")

    def __init__(self, target_typename: str, target_id: str, typed_value: AnyTypedValue):
        if not target_typename:
            raise ValueError("target_typename can not be missing")
        if not target_id:
            raise ValueError("target_id can not be missing")
        if typed_value is None:
            raise ValueError("typed_value can not be missing")
        self.target_typename = target_typename
        self.target_id = target_id
        self.typed_value = typed_value

    def is_int(self) -> bool:
        return self.typed_value.typename == IntType.typename

    def as_int(self) -> int | None:
        tv = self.typed_value
        return _INT.deserialize(tv.value) if tv.has_value else None

    def is_bool(self) -> bool:
        return self.typed_value.typename == BoolType.typename

    def as_bool(self) -> bool | None:
        tv = self.typed_value
        return _BOOL.deserialize(tv.value) if tv.has_value else None

    def is_long(self) -> bool:
        return self.typed_value.typename == LongType.typename

    def as_long(self) -> int | None:
        tv = self.typed_value
        return _LONG.deserialize(tv.value) if tv.has_value else None

    def is_string(self) -> bool:
        return self.typed_value.typename == StringType.typename

    def as_string(self) -> str | None:
        tv = self.typed_value
        return _STRING.deserialize(tv.value) if tv.has_value else None

    def is_float(self) -> bool:
        return self.typed_value.typename == FloatType.typename

    def as_float(self) -> float | None:
        tv = self.typed_value
        return _FLOAT.deserialize(tv.value) if tv.has_value else None

    def is_double(self) -> bool:
        return self.typed_value.typename == DoubleType.typename

    def as_double(self) -> float | None:
        tv = self.typed_value
        return _DOUBLE.deserialize(tv.value) if tv.has_value else None

    def is_type(self, tpe: Type) -> bool:
        """Whether this message's value has the typename of ``tpe``."""
        return self.typed_value.typename == tpe.typename

    def as_type(self, tpe: Type) -> typing.Any:
        """Deserializes the value with ``tpe`` (None if the message has no value).

        Like the official SDK this does not compare typenames; check with ``is_type`` first.
        """
        tv = self.typed_value
        if not tv.has_value:
            return None
        return tpe.serializer().deserialize(tv.value)

    def value_typename(self) -> str:
        return self.typed_value.typename

    def raw_value(self) -> bytes | None:
        tv = self.typed_value
        return tv.value if tv.has_value else None

    def __repr__(self) -> str:
        return f"Message({self.target_typename}/{self.target_id}, {self.typed_value.typename})"


class EgressMessage:
    """A record for an egress, identified by the egress typename."""

    __slots__ = ("typename", "typed_value")

    def __init__(self, typename: str, typed_value: AnyTypedValue):
        if not typename:
            raise ValueError("typename is missing")
        if typed_value is None:
            raise ValueError("value is missing")
        self.typename = typename
        self.typed_value = typed_value

    def value_typename(self) -> str:
        return self.typed_value.typename

    def raw_value(self) -> bytes | None:
        tv = self.typed_value
        return tv.value if tv.has_value else None

    def __repr__(self) -> str:
        return f"EgressMessage({self.typename}, {self.typed_value.typename})"


PRIMITIVE_GETTERS: dict[str, Type] = {
    "int_value": IntType,
    "float_value": FloatType,
    "long_value": LongType,
    "str_value": StringType,
    "double_value": DoubleType,
    "bool_value": BoolType,
}

# int_value=... and the like: (typename, serialize) of the keyword's built-in type, for message_builder
_PRIMITIVE_CODECS: dict[str, tuple[str, typing.Callable[[typing.Any], bytes]]] = {
    keyword: (t.typename, t.serializer().serialize) for keyword, t in PRIMITIVE_GETTERS.items()}

_VALUE_KEYWORDS_HELP = (
    "pass exactly one of int_value=, float_value=, long_value=, str_value=, double_value=, bool_value=, "
    "or the pair value=..., value_type=<a Type>"
)


def message_builder(target_typename: str, target_id: str, **kwargs: typing.Any) -> Message:
    """Builds a message to the function instance ``target_typename``/``target_id``.

    ``message_builder("com.example/greeter", "bob", str_value="hi")`` or
    ``message_builder("com.example/greeter", "bob", value=request, value_type=GREET_REQUEST)``.
    """
    count = len(kwargs)
    if count == 1:
        ((keyword, value),) = kwargs.items()
        codec = _PRIMITIVE_CODECS.get(keyword)
        if codec is not None and value is not None:  # int_value=... and the like: to_typed_value, inlined
            data = codec[1](value)
            tv = _new(PlainTypedValue)  # typed_value(), inlined: every message of most functions is made here
            tv.typename, tv.has_value, tv.value = codec[0], True, data
            if target_typename and target_id:  # what Message.__init__ checks: made without the call
                message = _new(Message)
                message.target_typename, message.target_id, message.typed_value = target_typename, target_id, tv
                return message
            return Message(target_typename, target_id, tv)  # raises the missing target's error
        if codec is None and keyword != "value":  # a ValueError, as in the official SDK
            raise ValueError(f"Unknown value keyword {keyword!r}; {_VALUE_KEYWORDS_HELP}")
        value_type = PRIMITIVE_GETTERS.get(keyword)
    elif count == 2:
        if set(kwargs) != {"value", "value_type"}:  # a KeyError, as in the official SDK
            raise KeyError(f"Wrong value keywords given: {sorted(kwargs)}; {_VALUE_KEYWORDS_HELP}")
        value, value_type = kwargs["value"], kwargs["value_type"]
    else:
        raise TypeError(f"Wrong number of value keywords given: {sorted(kwargs)}; {_VALUE_KEYWORDS_HELP}")
    if value is None:
        raise ValueError("value can not be missing")
    if not value_type:
        raise ValueError(
            "Could not deduce the value type, please specify the type explicitly. via passing: "
            "value=<the value>, value_type=<the type>"
        )
    if not isinstance(value_type, Type):
        raise TypeError(f"value_type must be a pystatefun Type, got {value_type!r}")
    return Message(target_typename, target_id, to_typed_value(value_type, value))


def egress_message_builder(target_typename: str, value: typing.Any, value_type: Type) -> EgressMessage:
    """Builds a record for the generic egress ``target_typename``.

    For Kafka and Kinesis egresses use ``kafka_egress_message`` and ``kinesis_egress_message``.
    """
    if not target_typename:
        raise ValueError("target typename is missing")
    if value is None:
        raise ValueError("value can not be missing")
    if not isinstance(value_type, Type):
        raise TypeError(f"value_type must be a pystatefun Type, got {value_type!r}")
    return EgressMessage(target_typename, to_typed_value(value_type, value))
