"""The processing core: one Runtime per process, over the partitions it owns.

It owns some partitions (all of them on the embedded backend), each with a PartitionProcessor holding
that partition's mailboxes and state cache. Per address at most one batch is in flight; messages arriving
meanwhile wait in the mailbox's backlog and form the next batch (at most ``max_batch`` of the function's
endpoint). Messages between local addresses are delivered in memory; every effect goes into the open
epoch, and the backend commits epochs atomically (see epoch.py).

The Runtime's fields and its life cycle are here; what it does is in one module per job:

* mailbox.py     the per-address queues and the partitions that hold them
* routing.py     a message to its mailbox (or to the log), back-pressure for ingresses
* scheduler.py   running ready batches, completing or parking them, firing due timers
* effects.py     a batch's effects applied to the open epoch; state read through its write buffer
* commits.py     sealing epochs and committing them in order through the backend
* operations.py  what the admin API does: resume, skip, cancel, read and write state
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
import typing

from pystatefun.runtime.commits import Committing
from pystatefun.runtime.effects import EffectApplication
from pystatefun.runtime.envelope import Envelope, address, partition_of
from pystatefun.runtime.epoch import EgressRecord, Epoch, StateKey, StoredValue, StoreFullError, Timer
from pystatefun.runtime.flows import Flows, RecentCommits
from pystatefun.runtime.mailbox import FunctionStats, FunctionType, Invoker, Mailbox, PartitionProcessor
from pystatefun.runtime.operations import Operations
from pystatefun.runtime.replies import ReplySink
from pystatefun.runtime.routing import Routing
from pystatefun.runtime.scheduler import Scheduling
from pystatefun.runtime.timers import TimerService
from pystatefun.sdk.address import SdkAddress
from pystatefun.wire.request_reply_pb2 import TypedValue

if typing.TYPE_CHECKING:
    from pystatefun.tracing import Tracing

log = logging.getLogger("pystatefun.runtime")


class Egress(typing.Protocol):
    def record(self, egress_typename: str, value: TypedValue) -> EgressRecord:
        """The record to store for ``value``; ValueError (the reason) if it cannot be accepted."""
        ...

    def committed(self, epoch: Epoch) -> None:
        """Called after every commit that wrote anything; ``epoch`` is what it wrote."""
        ...


class Recovery(typing.Protocol):
    """What a backend recovered (backends/embedded.py Recovery)."""

    inbox: typing.Iterable[Envelope]
    timers: list[Timer]
    parked: dict[StateKey, str]
    next_seq: int
    next_timer_id: int


class Store(typing.Protocol):
    """What a durability backend gives the core (backends/embedded.py is the reference)."""

    def load_state(self, typename: str, id: str) -> dict[str, StoredValue]: ...

    def load_inbox(self, typename: str, id: str, after_seq: int, limit: int) -> list[Envelope]: ...

    def commit(self, epoch: Epoch, partition_of: typing.Callable[[str], int]) -> None: ...

    async def commit_async(self, epoch: Epoch, partition_of: typing.Callable[[str], int]) -> None: ...


class Runtime(Routing, Scheduling, EffectApplication, Committing, Operations):
    """Runs functions over the partitions this process owns, committing effects in epochs."""

    def __init__(
        self,
        store: Store,
        resolve: typing.Callable[[str], Invoker | None],
        egresses: typing.Mapping[str, Egress],
        partitions: int,
        *,
        commit_interval: float = 0.1,
        commit_when_idle: bool = True,
        max_backlog: int | None = None,
        max_volatile: int = 100_000,
        max_cached_addresses: int = 100_000,
        clock: typing.Callable[[], float] = time.time,
        owned: typing.Iterable[int] | None = None,
        spill: bool = True,
        tracing: Tracing | None = None,
    ):
        self.store = store
        self.resolve = resolve
        self.egresses = egresses
        self.partitions = partitions
        # the partitions this process runs: all of them on the embedded backend; on the Kafka backend the
        # ones the consumer group assigned (own/release), and messages for others go to the log
        self.processors = {p: PartitionProcessor(p) for p in (range(partitions) if owned is None else owned)}
        # whether full mailboxes may leave messages in the store's inbox (embedded); else they stay in memory
        self.spill = spill
        self.tracing = tracing  # OpenTelemetry spans (tracing/), None when tracing is off
        self.commit_interval = commit_interval
        self.commit_when_idle = commit_when_idle
        self.max_backlog = max_backlog
        self.max_volatile = max_volatile
        self.max_cached_addresses = max_cached_addresses
        self.clock = clock
        self.timers = TimerService()
        self.epoch: Epoch | None = None
        self._ready: collections.deque[Mailbox] = collections.deque()
        self._went_idle: list[Mailbox] = []  # idle mailboxes, dropped once idle for a whole interval (scheduler.py)
        self._swept_at = -math.inf  # when (self.clock()) a seal last swept the idle mailboxes (commits.py)
        self._wake = asyncio.Event()
        self._draining = False  # the drain loop is running ready mailboxes: scheduling needs no _wake
        self._commit_now = asyncio.Event()
        self._timers_changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._committing: asyncio.Task | None = None  # the commit in progress
        self._commit_lock = asyncio.Lock()
        # completes with the exception of a core loop that failed (see _core_task_done)
        self.failed: asyncio.Future | None = None
        self._invocations: set[asyncio.Task] = set()
        self._next_seq = 1
        self.running = False
        self.reply_sink: ReplySink | None = None  # where messages to reply addresses go (the ingress)
        self.stats: dict[str, FunctionStats] = {}  # per function type
        self._function_types: dict[str, FunctionType] = {}  # what each type's mailboxes share (routing.py)
        self.flows = Flows()  # messages per sender -> target, for the function graph
        self.recent_commits = RecentCommits()
        self._invocation = 0  # batches started by this process, numbering them for the logs
        # told the seconds and the record count of every commit (the metrics hook)
        self.on_commit: typing.Callable[[float, int], None] | None = None
        # told every epoch as it closes for its commit, before the backend writes it (the playground
        # egress hands its records to waiting readers there)
        self.on_seal: list[typing.Callable[[Epoch], None]] = []
        self.commits = 0  # epochs committed
        # why the runtime cannot take new messages from outside now (the disk is full), else None;
        # ingresses refuse while it is set and the runtime retries its commit until it clears
        self.unavailable: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def partition_of(self, id: str) -> int:
        return partition_of(id, self.partitions)  # (a method, for the backend's commit)

    def owns(self, target: SdkAddress) -> bool:
        """Whether this process runs ``target``'s partition (on the Kafka backend, a worker runs some)."""
        return partition_of(target.id, self.partitions) in self.processors

    async def start(self, recovery: Recovery | None = None) -> None:
        """Starts processing what the backend recovered: the inbox, pending timers and parked addresses."""
        self.epoch = Epoch(1)
        if recovery is not None:
            self._next_seq = recovery.next_seq
            self.timers = TimerService(recovery.next_timer_id)
            for timer in recovery.timers:
                self.timers.add(timer)
            for (typename, id), reason in recovery.parked.items():
                mailbox = self._mailbox(address(typename, id))
                if mailbox is not None:
                    mailbox.parked = reason
            for envelope in recovery.inbox:
                self.route(envelope)
        self.running = True
        loop = asyncio.get_running_loop()
        self.failed = loop.create_future()
        self._tasks = [
            loop.create_task(self._drain_loop(), name="pystatefun-drain"),
            loop.create_task(self._commit_loop(), name="pystatefun-commit"),
            loop.create_task(self._timer_loop(), name="pystatefun-timers"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._core_task_done)

    def _core_task_done(self, task: asyncio.Task) -> None:
        """A loop of the core ended by an exception (a failed commit, a bug): the runtime must stop."""
        if not task.cancelled() and task.exception() is not None and not self.failed.done():
            error = task.exception()
            # the traceback goes to the log here: the one-line message the process ends with cannot hold it
            log.error("the runtime stops: %s", error, exc_info=error)
            self.failed.set_exception(error)

    async def stop(self) -> None:
        """Stops processing and commits what is done; unfinished messages stay in the inbox."""
        if self.epoch is None:
            return  # never started
        self.running = False
        for task in self._tasks + list(self._invocations):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._invocations, return_exceptions=True)
        if self._committing is not None:
            await asyncio.gather(self._committing, return_exceptions=True)
        if self.failed.done():
            return  # after a failed commit, only what is on disk is safe to continue from
        if self.unavailable is None:  # else an epoch still waits for space, and later ones cannot go first
            try:
                self.commit()
                return
            except StoreFullError:
                pass
        log.error("stopping with the disk full: the last epochs are not committed. Nothing they did was "
                  "acknowledged, and their inputs are still in the inbox: they run again after a restart once "
                  "there is space")

    # -- partition ownership (the Kafka backend) ------------------------------------------------------

    def own(self, partition: int, timers: typing.Iterable[Timer] = (), parked: typing.Mapping[StateKey, str] = {},
            catching_up: bool = False) -> None:
        """Starts running ``partition`` with its restored timers and parked addresses. ``catching_up``: its
        log may hold messages not processed yet, which come first: the messages this process routes to it
        are held until ``caught_up(partition)`` (routing.py)."""
        processor = self.processors[partition] = PartitionProcessor(partition)
        if catching_up:
            processor.held = []
        for timer in timers:
            self.timers.add(timer)
        for (typename, id), reason in parked.items():
            mailbox = self._mailbox(address(typename, id))
            if mailbox is not None:
                mailbox.parked = reason
        self._timers_changed.set()

    async def release(self, partitions: typing.Collection[int]) -> None:
        """Hands partitions over: no new batches start on them, the batches in flight finish, and the
        epoch commits with everything they did; then their mailboxes, caches and timers are dropped
        (what was not processed is in the log, after the committed offsets, for the next owner)."""
        processors = [self.processors[p] for p in partitions if p in self.processors]
        for processor in processors:
            processor.leaving = True
        while any(m.in_flight is not None for p in processors for m in p.mailboxes.values()):
            await asyncio.sleep(0.005)
        await self.commit_async()
        for processor in processors:
            del self.processors[processor.partition]
        self.timers.drop_partitions({p.partition for p in processors})

    def new_seq(self) -> int:
        """A sequence number for a message read from the log (the backend maps it to its position)."""
        self._next_seq += 1
        return self._next_seq - 1
