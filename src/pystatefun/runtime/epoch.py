"""Epochs: what the runtime did since the last commit, committed atomically by the backend.

Everything a batch of invocations causes -- inputs consumed, state written, timers set or cancelled,
messages still undelivered, egress records, idempotency records -- goes into the open epoch. The backend
commits an epoch in one transaction (SQLite) or one Kafka transaction; only then are its state writes
applied to the state cache and the ingress requests that joined it answered. If the process dies first,
none of it happened, and the inputs are still in the inbox to be processed again.
"""

from __future__ import annotations

import asyncio
import typing
from dataclasses import dataclass, field
from pathlib import Path

from pystatefun.runtime.envelope import Envelope
from pystatefun.sdk.address import SdkAddress
from pystatefun.wire.kafka_egress_pb2 import KafkaProducerRecord
from pystatefun.wire.kinesis_egress_pb2 import KinesisEgressRecord
from pystatefun.wire.request_reply_pb2 import TypedValue

StateKey = tuple[str, str]  # (function typename, id)


class StoreFullError(RuntimeError):
    """A commit (or another write) failed because the disk holding the data dir is full. It was rolled back
    whole, so the store stays usable and the same epoch can be committed again once there is space: the
    runtime keeps it, refuses new messages from outside meanwhile, and retries (processor.py)."""

    def __init__(self, data_dir: Path, free_bytes: int):
        self.data_dir = data_dir
        self.free_bytes = free_bytes
        super().__init__(
            f"the disk of data dir {data_dir} is full ({free_bytes} bytes free): the write was rolled back; "
            f"free space on that disk (or move the data dir to a larger one)"
        )


@dataclass(slots=True)
class StoredValue:
    """A state value: its TypedValue and when it expires (epoch ms), if it does."""

    value: TypedValue
    expire_at: int | None = None


@dataclass(slots=True)
class Timer:
    """A delayed message waiting for its due time."""

    timer_id: int
    partition: int
    due_ms: int
    envelope: Envelope  # caller = the sender
    token: str | None

    @property
    def sender_key(self) -> tuple[str, str, str] | None:
        """(sender typename, sender id, token): a token is scoped to the address that sent it."""
        caller = self.envelope.caller
        if not self.token or caller is None:
            return None
        return (caller.typename, caller.id, self.token)


@dataclass(slots=True)
class EgressRecord:
    egress_id: str
    topic: str
    payload: bytes
    seq: int | None = None  # its place in the embedded store's egress table, set when the commit writes it
    # a Kafka egress's record as parsed when it was checked: the Kafka backend produces it without
    # parsing the payload again
    kafka: KafkaProducerRecord | None = None
    kinesis: KinesisEgressRecord | None = None  # the same for a Kinesis egress's record


@dataclass(slots=True)
class IdempotencyRecord:
    """The answer given to an ingress request with an idempotency key, given again to its retries."""

    key: str
    expires_ms: int
    status: int  # 202 accepted; 200 a reply (request/reply)
    body: bytes
    content_type: str = ""
    # a digest of the request the key was first used for (target, content type, body): a retry must be
    # the same request; empty in records kept before digests were
    request: str = ""
    # where it is kept: the partition of the request's target, whose owner answers its retries (Kafka
    # backend); not stored with the record
    partition: int | None = None


@dataclass(slots=True)
class DeadLetter:
    """A message (or egress record) that had nowhere to go; ``target_id`` is empty for an egress."""

    target_type: str
    target_id: str
    caller: SdkAddress | None
    value: TypedValue
    reason: str
    at_ms: int


@dataclass
class Epoch:
    """The open epoch: effects waiting for the next commit."""

    number: int
    consumed: list[int] = field(default_factory=list)  # inbox seqs whose effects are in this epoch
    # produced here, not yet consumed nor durable; a dict for its insertion order, which the commit keeps
    # in the inbox so that an address gets its messages in the same order after a restart
    volatile: dict[Envelope, None] = field(default_factory=dict)
    # the write buffer: the full state of every address written in this epoch, and which names changed
    state: dict[StateKey, tuple[dict[str, StoredValue], set[str]]] = field(default_factory=dict)
    partitions_of_state: dict[StateKey, int] = field(default_factory=dict)
    timers_added: dict[int, Timer] = field(default_factory=dict)
    timers_removed: list[int] = field(default_factory=list)
    egress: list[EgressRecord] = field(default_factory=list)
    egress_read: list[int] = field(default_factory=list)  # seqs of playground egress records read: deleted
    idempotency: list[IdempotencyRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    parked: dict[StateKey, str | None] = field(default_factory=dict)  # reason, or None when resumed
    # positions in external sources (a Kafka ingress's topic partitions) after the records whose messages
    # are in this epoch: (source id, topic, partition) -> next offset. They commit with the effects, so a
    # restart reads each record again exactly when its effects were not committed.
    source_offsets: dict[tuple[str, str, int], int] = field(default_factory=dict)
    # the same for Kinesis ingresses: (source id, stream, shard) -> position (io/kinesis/ingress.py)
    source_positions: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # messages for partitions this process does not own (the Kafka backend): they go to the log
    outbound: list[Envelope] = field(default_factory=list)
    # addresses holding messages of this epoch in their mailbox overflow, to spill once it commits
    overflowing: set[StateKey] = field(default_factory=set)
    awaited: bool = False  # someone waits for this commit: an idle runtime commits it at once
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def empty(self) -> bool:
        return not (
            self.consumed or self.volatile or self.state or self.timers_added or self.timers_removed
            or self.egress or self.egress_read or self.idempotency or self.dead_letters or self.parked
            or self.source_offsets or self.source_positions or self.outbound
        )

    def committed(self) -> typing.Awaitable[None]:
        """Waits until this epoch has committed (cancelling the wait does not cancel the commit)."""
        self.awaited = True
        return asyncio.shield(self.done)

    def on_commit(self, callback: typing.Callable[[], None]) -> None:
        """Calls ``callback`` once this epoch has committed."""
        self.awaited = True
        self.done.add_done_callback(lambda _: callback())

    def size(self) -> int:
        """How many records the commit writes (for metrics and the commit trigger)."""
        return (
            len(self.consumed) + len(self.volatile) + sum(len(changed) for _, changed in self.state.values())
            + len(self.timers_added) + len(self.timers_removed) + len(self.egress) + len(self.egress_read)
            + len(self.idempotency) + len(self.dead_letters) + len(self.parked) + len(self.source_offsets)
            + len(self.source_positions) + len(self.outbound)
        )
