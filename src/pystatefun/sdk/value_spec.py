"""ValueSpec: the declaration of one piece of a function's persisted state."""

from __future__ import annotations

from datetime import timedelta
from keyword import iskeyword

from pystatefun.sdk.types import Type


class ValueSpec:
    """A named, typed state value of a function, optionally expiring.

    ``name`` must be a lower-case Python identifier (it becomes an attribute of ``context.storage``).
    At most one of ``expire_after_call`` (expire when the function has not been called for that long) and
    ``expire_after_write`` (expire when the value has not been written for that long) may be given.
    """

    __slots__ = ("name", "type", "duration", "after_call", "after_write")

    def __init__(
        self,
        name: str,
        type: Type,
        expire_after_call: timedelta | None = None,
        expire_after_write: timedelta | None = None,
    ):
        if not name:
            raise ValueError("name can not be missing.")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f"invalid name {name!r}. A spec name can only contain letters (a-z), digits (0-9) and "
                "underscores (_), cannot start with a digit, and cannot contain spaces."
            )
        if iskeyword(name):
            raise ValueError(
                f"invalid spec name {name!r}: it is a Python keyword, and spec names become attributes of "
                "context.storage. Choose another name."
            )
        if not name.islower():
            raise ValueError(f"Only lower case names are allowed, {name!r} is given; use {name.lower()!r}.")
        if not type:
            raise ValueError("type can not be missing.")
        if not isinstance(type, Type):
            raise TypeError(
                f"type of ValueSpec {name!r} is not a StateFun type (got {type!r}); use IntType, StringType, "
                "make_json_type(...), make_protobuf_type(...) or another pystatefun Type."
            )
        for what, duration in (("expire_after_call", expire_after_call), ("expire_after_write", expire_after_write)):
            if duration is not None and not isinstance(duration, timedelta):
                raise TypeError(f"{what} of ValueSpec {name!r} must be a datetime.timedelta, got {duration!r}")
        if expire_after_call and expire_after_write:
            raise ValueError("Either expire_after_call or expire_after_write can be set, but not both.")
        self.name = name
        self.type = type
        if expire_after_call:
            self.duration = int(expire_after_call.total_seconds() * 1000.0)
            self.after_call, self.after_write = True, False
        elif expire_after_write:
            self.duration = int(expire_after_write.total_seconds() * 1000.0)
            self.after_call, self.after_write = False, True
        else:
            self.duration = 0
            self.after_call = self.after_write = False

    def __repr__(self) -> str:
        ttl = ""
        if self.after_call:
            ttl = f", expire_after_call={self.duration}ms"
        elif self.after_write:
            ttl = f", expire_after_write={self.duration}ms"
        return f"ValueSpec({self.name!r}, {self.type.typename!r}{ttl})"
