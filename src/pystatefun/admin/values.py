"""State values as the admin API shows and takes them: a typename, the bytes in base64, and the decoded
value where the bytes have a JSON form (the six built-in types and JSON types)."""

from __future__ import annotations

import base64
import binascii
import json
import typing

from pystatefun.sdk.types import BUILTIN_TYPES


class StateValueError(ValueError):
    """A value the API was given cannot be stored; the message says what to fix."""


def describe(typename: str, data: bytes) -> dict[str, typing.Any]:
    """``{"typename", "value_base64"}`` plus ``"value"`` when the bytes decode."""
    shown: dict[str, typing.Any] = {"typename": typename, "value_base64": base64.b64encode(data).decode()}
    builtin = BUILTIN_TYPES.get(typename)
    if builtin is not None:
        shown["value"] = builtin.serializer().deserialize(data)
        return shown
    try:
        shown["value"] = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        pass  # not JSON (a protobuf or custom type): the bytes are all there is
    return shown


def encode(name: str, typename: str, given: typing.Any, read: typing.Callable[[bytes], typing.Any] | None = None) -> bytes:
    """The bytes of state ``name`` (of type ``typename``) from ``{"value": ...}`` or ``{"value_base64": ...}``,
    refused unless ``read`` (how the function reads the state, where the runtime knows it) takes them."""
    data = _bytes(name, typename, given)
    if read is not None:
        try:
            read(data)
        except Exception as e:  # whatever a type's deserializer raises, the function would fail the same way
            raise StateValueError(f"state {name!r} is of type {typename}, and the function cannot read this value: {_one_line(e)}") from None
    return data


def _one_line(error: Exception) -> str:
    """A deserializer's error in one line: pydantic's per-field errors joined, else the text unwrapped."""
    errors = getattr(error, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" if e.get("loc") else e["msg"]
                             for e in errors())
        except (TypeError, KeyError):  # an errors() that is not pydantic's
            pass
    return " ".join(str(error).split()) or type(error).__name__


def _bytes(name: str, typename: str, given: typing.Any) -> bytes:
    if not isinstance(given, dict) or len(given.keys() & {"value", "value_base64"}) != 1:
        raise StateValueError(f"state {name!r}: give an object with exactly one of 'value' (built-in and JSON types) or 'value_base64' (the bytes)")
    if "value_base64" in given:
        try:
            return base64.b64decode(given["value_base64"], validate=True)
        except (binascii.Error, TypeError) as e:
            raise StateValueError(f"state {name!r}: value_base64 is not base64: {e}") from None
    builtin = BUILTIN_TYPES.get(typename)
    if builtin is not None:
        try:
            return builtin.serializer().serialize(given["value"])
        except (TypeError, ValueError) as e:
            raise StateValueError(f"state {name!r} is of type {typename}: {e}") from None
    # any other type is taken as JSON, the way make_json_type encodes it; others need value_base64
    return json.dumps(given["value"], ensure_ascii=False).encode("utf-8")
