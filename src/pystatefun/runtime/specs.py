"""State specs as the runtime keeps them: name, type, and expiration, for embedded and remote functions."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

from pystatefun.sdk.value_spec import ValueSpec
from pystatefun.wire.request_reply_pb2 import FromFunction

NONE, AFTER_WRITE, AFTER_CALL = 0, 1, 2  # the protocol's ExpireMode values
UNSET_TYPE = "io.statefun.types/unset"  # StateFun's placeholder for a spec without a type


@dataclass(frozen=True, slots=True)
class StateSpec:
    name: str
    type_typename: str
    mode: int  # NONE, AFTER_WRITE or AFTER_CALL
    ttl_ms: int
    # how the function reads the bytes (embedded functions only: the SDK type is in this process), so
    # that a value written from outside is refused if the function could not read it
    read: typing.Callable[[bytes], typing.Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, spec: ValueSpec) -> StateSpec:
        mode = AFTER_CALL if spec.after_call else AFTER_WRITE if spec.after_write else NONE
        return cls(spec.name, spec.type.typename, mode, spec.duration, spec.type.serializer().deserialize)

    @classmethod
    def from_protocol(cls, spec: FromFunction.PersistedValueSpec) -> StateSpec:
        expiration = spec.expiration_spec
        return cls(spec.state_name, spec.type_typename or UNSET_TYPE, int(expiration.mode), expiration.expire_after_millis)

    def expire_at(self, now_ms: int) -> int | None:
        """When a value written (or, after call, touched) at ``now_ms`` expires."""
        return now_ms + self.ttl_ms if self.mode != NONE else None
