"""The Kafka backend's records: messages in ``<app>.messages``, the changelog in ``<app>.state`` and
dead letters in ``<app>.dead-letters``.

A changelog key is a kind letter and the fields that name the thing, joined by NUL (which no typename or
id contains): ``s`` state value (typename, id, state name), ``t`` timer (timer id), ``p`` parked address
(typename, id), ``i`` idempotency record (key), ``k`` a Kinesis ingress's position in a shard (ingress id,
stream, shard; backends/kafka/kinesis.py), ``o`` the partition's messages processed ahead of its
committed offset (one per partition). Compaction keeps the last value of each key; a deleted
thing is a tombstone (no value).
"""

from __future__ import annotations

import base64
import json
import typing
from dataclasses import dataclass, field

from pystatefun.runtime.envelope import Envelope, address
from pystatefun.runtime.epoch import DeadLetter, IdempotencyRecord, StoredValue, Timer
from pystatefun.sdk.address import SdkAddress
from pystatefun.wire.log_pb2 import IdempotencyValue, LogMessage, ParkedValue, ProcessedOffsets, StateValue, TimerValue
from pystatefun.wire.request_reply_pb2 import Address, TypedValue
from pystatefun.wire.values import copy_into

SEP = "\x00"


def encode_message(envelope: Envelope) -> bytes:
    message = LogMessage(target=_address(envelope.target), traceparent=envelope.trace or "")
    copy_into(message.value, envelope.value)
    if envelope.caller is not None:
        message.caller.CopyFrom(_address(envelope.caller))
    return message.SerializeToString()


def decode_message(data: bytes) -> Envelope:
    message = LogMessage.FromString(data)
    return _envelope(message)


# the dead letter's message (a TypedValue) travels in a header, the rest is JSON for any Kafka tool to read
DEAD_LETTER_VALUE_HEADER = "pystatefun.value"


def encode_dead_letter(letter: DeadLetter) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A dead letter's record value and headers."""
    value = json.dumps({
        "target": f"{letter.target_type}/{letter.target_id}" if letter.target_id else letter.target_type,
        "caller": f"{letter.caller.typename}/{letter.caller.id}" if letter.caller else None,
        "typename": letter.value.typename, "reason": letter.reason, "at_ms": letter.at_ms,
        # the parts, as "target" and "caller" cannot tell a namespace's or an id's "/" apart (savepoints)
        "target_type": letter.target_type, "target_id": letter.target_id,
        "caller_type": letter.caller.typename if letter.caller else None,
        "caller_id": letter.caller.id if letter.caller else None,
    }).encode()
    return value, [(DEAD_LETTER_VALUE_HEADER, letter.value.SerializeToString())]


def decode_dead_letter(offset: int, value: bytes, headers: list[tuple[str, bytes]] | None) -> dict[str, typing.Any]:
    """A dead-letter record as the admin API lists dead letters (its ``seq`` is the offset + 1)."""
    letter = json.loads(value)
    message = next((TypedValue.FromString(v) for k, v in headers or () if k == DEAD_LETTER_VALUE_HEADER), TypedValue())
    return {"seq": offset + 1, "target": letter["target"], "caller": letter["caller"], "typename": letter["typename"],
            "value_base64": base64.b64encode(message.value).decode(), "reason": letter["reason"], "at_ms": letter["at_ms"]}


def dead_letter_of(value: bytes, headers: list[tuple[str, bytes]] | None) -> DeadLetter:
    """A dead-letter record as the runtime made it (a replay sends it again; a savepoint keeps it)."""
    letter = json.loads(value)
    message = next((TypedValue.FromString(v) for k, v in headers or () if k == DEAD_LETTER_VALUE_HEADER), TypedValue())
    if "target_type" in letter:
        target_type, target_id = letter["target_type"], letter["target_id"]
        caller_type, caller_id = letter.get("caller_type"), letter.get("caller_id")
    else:
        target_type, target_id = _split_address(letter["target"])
        caller_type, caller_id = _split_address(letter["caller"])
    caller = None if caller_type is None else address(caller_type, caller_id or "")
    return DeadLetter(target_type, target_id or "", caller, message, letter["reason"], letter["at_ms"])


def _split_address(text: str | None) -> tuple[str | None, str | None]:
    """``namespace/name/id`` as a dead letter's JSON wrote it before it named the parts: the namespace
    is taken to have no ``/`` (an id may have some)."""
    if not text:
        return None, None
    parts = text.split("/", 2)
    return "/".join(parts[:2]), (parts[2] if len(parts) > 2 else "")


def _envelope(message: LogMessage) -> Envelope:
    caller = None
    if message.HasField("caller"):
        caller = address(f"{message.caller.namespace}/{message.caller.type}", message.caller.id)
    target = address(f"{message.target.namespace}/{message.target.type}", message.target.id)
    return Envelope(target, caller, message.value, trace=message.traceparent or None)


def _address(a: SdkAddress) -> Address:
    namespace, _, name = a.typename.rpartition("/")
    return Address(namespace=namespace, type=name, id=a.id)


def state_key(typename: str, id: str, name: str) -> bytes:
    return SEP.join(("s", typename, id, name)).encode()


def encode_state(value: StoredValue) -> bytes:
    record = StateValue(expire_at_ms=value.expire_at or 0)
    copy_into(record.value, value.value)
    return record.SerializeToString()


def timer_key(timer_id: int) -> bytes:
    return f"t{SEP}{timer_id}".encode()


def encode_timer(timer: Timer) -> bytes:
    return TimerValue(due_ms=timer.due_ms, token=timer.token or "",
                      message=LogMessage.FromString(encode_message(timer.envelope))).SerializeToString()


def parked_key(typename: str, id: str) -> bytes:
    return SEP.join(("p", typename, id)).encode()


def encode_parked(reason: str) -> bytes:
    return ParkedValue(reason=reason).SerializeToString()


def idempotency_key(key: str) -> bytes:
    return f"i{SEP}{key}".encode()


def encode_idempotency(record: IdempotencyRecord) -> bytes:
    return IdempotencyValue(expires_ms=record.expires_ms, status=record.status, body=record.body,
                            content_type=record.content_type, request=record.request).SerializeToString()


def kinesis_key(source: str, stream: str, shard: str) -> bytes:
    return SEP.join(("k", source, stream, shard)).encode()


PROCESSED_KEY = b"o"


def encode_processed(offsets: set[int]) -> bytes:
    """Offsets as runs [start, end): consecutive offsets, the common case, take two numbers per run."""
    ranges: list[int] = []
    for offset in sorted(offsets):
        if ranges and ranges[-1] == offset:
            ranges[-1] = offset + 1
        else:
            ranges += [offset, offset + 1]
    return ProcessedOffsets(ranges=ranges).SerializeToString()


def decode_processed(data: bytes) -> set[int]:
    ranges = ProcessedOffsets.FromString(data).ranges
    return {offset for start, end in zip(ranges[::2], ranges[1::2]) for offset in range(start, end)}


@dataclass
class PartitionState:
    """What one partition's changelog holds, as rebuilt on assignment and kept up to date by commits."""

    partition: int
    state: dict[tuple[str, str], dict[str, StoredValue]] = field(default_factory=dict)
    timers: dict[int, Timer] = field(default_factory=dict)
    parked: dict[tuple[str, str], str] = field(default_factory=dict)
    idempotency: dict[str, IdempotencyRecord] = field(default_factory=dict)
    processed: set[int] = field(default_factory=set)  # offsets processed ahead of the committed offset
    kinesis: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (ingress, stream, shard) -> position

    def apply(self, key: bytes, value: bytes | None) -> None:
        """One changelog record (restore)."""
        if key == PROCESSED_KEY:
            self.processed = set() if value is None else decode_processed(value)
            return
        kind, *names = key.decode().split(SEP)
        if kind == "s":
            typename, id, name = names
            if value is None:
                values = self.state.get((typename, id))
                if values is not None:
                    values.pop(name, None)
                    if not values:
                        del self.state[(typename, id)]
            else:
                stored = StateValue.FromString(value)
                self.state.setdefault((typename, id), {})[name] = StoredValue(stored.value, stored.expire_at_ms or None)
        elif kind == "t":
            timer_id = int(names[0])
            if value is None:
                self.timers.pop(timer_id, None)
            else:
                stored = TimerValue.FromString(value)
                self.timers[timer_id] = Timer(timer_id, self.partition, stored.due_ms, _envelope(stored.message),
                                              stored.token or None)
        elif kind == "p":
            if value is None:
                self.parked.pop((names[0], names[1]), None)
            else:
                self.parked[(names[0], names[1])] = ParkedValue.FromString(value).reason
        elif kind == "k":
            source, stream, shard = names
            if value is None:
                self.kinesis.pop((source, stream, shard), None)
            else:
                self.kinesis[(source, stream, shard)] = value.decode()
        elif kind == "i":
            if value is None:
                self.idempotency.pop(names[0], None)
            else:
                stored = IdempotencyValue.FromString(value)
                self.idempotency[names[0]] = IdempotencyRecord(names[0], stored.expires_ms, stored.status, stored.body,
                                                               stored.content_type, stored.request)
