"""Mailboxes: the messages of one address, in order, and the partitions that hold them.

A Mailbox is the unit of "one invocation at a time per address": the batch in flight, the backlog that
forms the next batch, and what waits behind a full backlog (on disk or, until it commits, in memory).
A PartitionProcessor is one partition's mailboxes and the cache of its committed state.
"""

from __future__ import annotations

import asyncio
import collections
import time
import typing

from pystatefun.runtime.envelope import Envelope
from pystatefun.runtime.epoch import StateKey, StoredValue
from pystatefun.runtime.specs import StateSpec
from pystatefun.sdk.address import SdkAddress


class Invoker(typing.Protocol):
    max_batch: int

    def specs(self, typename: str) -> dict[str, StateSpec]: ...

    def state_rules(self, typename: str) -> tuple[dict[str, StateSpec], tuple[StateSpec, ...]]: ...

    def is_async(self, typename: str) -> bool: ...


RECENT_BATCHES = 1024  # batches per function type whose durations are kept (the admin API's latency)
# spilled messages with a waiting request a mailbox remembers (Mailbox.spilled_requests); past it the
# oldest are forgotten: their requests have most likely timed out (a ?wait is at most 300 s)
SPILLED_REQUESTS = 1000


class FunctionStats:
    """Counters of one function type, plain ints on the hot path; the metrics and the admin API read them."""

    __slots__ = ("messages_in", "batches", "out_local", "out_remote", "out_egress", "failures", "largest_batch",
                 "latencies")

    def __init__(self) -> None:
        self.messages_in = 0
        self.batches = 0
        self.out_local = 0  # to functions on partitions this process owns (all, on the embedded backend)
        self.out_remote = 0  # to functions on partitions owned elsewhere (the Kafka backend)
        self.out_egress = 0
        self.failures = 0  # batches that failed and parked their address
        self.largest_batch = 0
        # seconds each of the last RECENT_BATCHES batches took, failed ones too
        self.latencies: collections.deque[float] = collections.deque(maxlen=RECENT_BATCHES)

    def ran(self, started: float, size: int, ok: bool) -> None:
        """A batch of ``size`` messages that began at ``started`` (time.perf_counter()) ended."""
        self.latencies.append(time.perf_counter() - started)
        if size > self.largest_batch:
            self.largest_batch = size
        if not ok:
            self.failures += 1


class FunctionType:
    """What every mailbox of one function type shares, looked up once per type (routing.py): its
    invoker, whether its batches run as tasks, the backlog cap and the type's counters."""

    __slots__ = ("invoker", "is_async", "cap", "stats")

    def __init__(self, invoker: Invoker, is_async: bool, cap: int, stats: FunctionStats):
        self.invoker = invoker
        self.is_async = is_async
        self.cap = cap
        self.stats = stats


class Mailbox:
    """The messages of one address, in order: the batch in flight (if any), the backlog behind it (in
    memory, at most ``cap``), then messages that wait on disk only (``spilled``: committed to the inbox,
    read back as the backlog drains), then ``overflow``: messages that arrived behind the spilled ones
    and are not committed yet (the next commit spills them). Memory per address stays bounded however
    many messages other functions send it."""

    __slots__ = ("address", "key", "invoker", "is_async", "cap", "processor", "stats", "backlog", "in_flight",
                 "invocation", "started", "parked", "scheduled", "waiters", "spilled", "spill_after", "overflow",
                 "spilled_requests", "span", "trace", "listed", "seen")

    def __init__(self, address: SdkAddress, kind: FunctionType, processor: PartitionProcessor):
        self.address = address
        self.key: StateKey = (address.typename, address.id)
        self.invoker = kind.invoker
        self.is_async = kind.is_async
        self.cap = kind.cap
        self.stats = kind.stats
        self.processor = processor
        self.backlog: collections.deque[Envelope] = collections.deque()
        self.in_flight: list[Envelope] | None = None
        self.invocation = 0  # the number of the batch in flight (or last run), for the logs
        self.started = 0.0  # when the batch in flight began (time.perf_counter())
        self.parked: str | None = None
        self.scheduled = False
        self.waiters: list[asyncio.Future] = []  # ingresses waiting for room in the backlog
        self.spilled = 0  # messages in the inbox only, after ``spill_after`` (an inbox seq)
        self.spill_after = 0
        self.overflow: collections.deque[Envelope] = collections.deque()
        # (seq, reply id) of the spilled messages that a request waits on (runtime/replies.py), oldest
        # first, so that it learns at once when the address parks without the inbox being read; made
        # with the first one (most mailboxes never hold one)
        self.spilled_requests: collections.deque[tuple[int, str]] | None = None
        # the span of the batch in flight and its traceparent, which the messages it sends carry; None
        # when tracing is off or the batch is not traced (runtime/scheduler.py)
        self.span: typing.Any = None
        self.trace: str | None = None
        # the idle-mailbox sweep (scheduler.py, _drop_idle_mailboxes): whether this mailbox is on its list,
        # and the batch number it had when a seal last found it idle (-1: never)
        self.listed = False
        self.seen = -1

    @property
    def full(self) -> bool:
        return len(self.backlog) >= self.cap or self.spilled > 0 or bool(self.overflow)

    @property
    def idle(self) -> bool:
        return (not self.backlog and self.in_flight is None and self.parked is None and not self.waiters
                and not self.spilled and not self.overflow)


class PartitionProcessor:
    """One partition: its mailboxes and the cache of its committed state."""

    def __init__(self, partition: int):
        self.partition = partition
        # keyed by (typename, id): a tuple of two strings hashes in C, an SdkAddress in Python
        self.mailboxes: dict[StateKey, Mailbox] = {}
        self.cache: dict[StateKey, dict[str, StoredValue]] = {}
        self.leaving = False  # being handed to another process: no new batches start
        # Messages from this process for the partition while it catches up with its log after it was
        # assigned (the Kafka backend): the log can hold a sender's earlier messages, unprocessed by the
        # previous owner, so the later ones wait here until it is read (Runtime.caught_up). None: caught up.
        self.held: list[Envelope] | None = None
