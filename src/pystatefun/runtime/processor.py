"""The processing core: mailboxes per address, partition processors, the scheduler and epoch commits.

One Runtime per process. It owns some partitions (all of them on the embedded backend), each with a
PartitionProcessor holding that partition's mailboxes and state cache. Per address at most one batch is
in flight; messages arriving meanwhile wait in the mailbox's backlog and form the next batch (at most
``max_batch`` of the function's endpoint). Messages between local addresses are delivered in memory;
every effect goes into the open epoch, and the backend commits epochs atomically (see epoch.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import typing

from pystatefun.runtime.envelope import Envelope, address, partition_of
from pystatefun.runtime.epoch import DeadLetter, EgressRecord, Epoch, StateKey, StoredValue, StoreFullError, Timer
from pystatefun.runtime.invokers import Effects, InvocationError
from pystatefun.runtime.replies import REPLY_TYPENAME, ReplySink
from pystatefun.runtime.specs import StateSpec
from pystatefun.runtime.timers import DuplicateTokenError, TimerService
from pystatefun.runtime.waiting import wait_for_event
from pystatefun.sdk.address import SdkAddress
from pystatefun.wire.request_reply_pb2 import TypedValue

log = logging.getLogger("pystatefun.runtime")

# how long the drain loop runs batches before the rest of the loop gets a turn: what a request from
# outside (a health check, a message) waits at most behind the runtime's own work
TURN_SECONDS = 0.005
STORE_FULL_RETRY_SECONDS = 1.0  # how often a commit is tried again while the disk is full


class Invoker(typing.Protocol):
    max_batch: int

    def specs(self, typename: str) -> dict[str, StateSpec]: ...

    def after_call(self, typename: str) -> tuple[StateSpec, ...]: ...

    def is_async(self, typename: str) -> bool: ...


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


class FunctionStats:
    """Counters of one function type, plain ints on the hot path; the metrics read them when scraped."""

    __slots__ = ("messages_in", "batches", "out_local", "out_remote", "out_egress")

    def __init__(self) -> None:
        self.messages_in = 0
        self.batches = 0
        self.out_local = 0  # to functions on partitions this process owns (all, on the embedded backend)
        self.out_remote = 0  # to functions on partitions owned elsewhere (the Kafka backend)
        self.out_egress = 0


class Mailbox:
    """The messages of one address, in order: the batch in flight (if any), the backlog behind it (in
    memory, at most ``cap``), then messages that wait on disk only (``spilled``: committed to the inbox,
    read back as the backlog drains), then ``overflow``: messages that arrived behind the spilled ones
    and are not committed yet (the next commit spills them). Memory per address stays bounded however
    many messages other functions send it."""

    __slots__ = ("address", "key", "invoker", "is_async", "cap", "processor", "stats", "backlog", "in_flight",
                 "invocation", "parked", "scheduled", "waiters", "spilled", "spill_after", "overflow")

    def __init__(self, address: SdkAddress, invoker: Invoker, processor: PartitionProcessor, cap: int,
                 stats: FunctionStats):
        self.address = address
        self.stats = stats
        self.key: StateKey = (address.typename, address.id)
        self.invoker = invoker
        self.is_async = invoker.is_async(address.typename)
        self.cap = cap
        self.processor = processor
        self.backlog: collections.deque[Envelope] = collections.deque()
        self.in_flight: list[Envelope] | None = None
        self.invocation = 0  # the number of the batch in flight (or last run), for the logs
        self.parked: str | None = None
        self.scheduled = False
        self.waiters: list[asyncio.Future] = []  # ingresses waiting for room in the backlog
        self.spilled = 0  # messages in the inbox only, after ``spill_after`` (an inbox seq)
        self.spill_after = 0
        self.overflow: collections.deque[Envelope] = collections.deque()

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


class Runtime:
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
        self.commit_interval = commit_interval
        self.commit_when_idle = commit_when_idle
        self.max_backlog = max_backlog
        self.max_volatile = max_volatile
        self.max_cached_addresses = max_cached_addresses
        self.clock = clock
        self.timers = TimerService()
        self.epoch: Epoch | None = None
        self._ready: collections.deque[Mailbox] = collections.deque()
        self._wake = asyncio.Event()
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
            self.failed.set_exception(task.exception())

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

    def own(self, partition: int, timers: typing.Iterable[Timer] = (), parked: typing.Mapping[StateKey, str] = {}) -> None:
        """Starts running ``partition`` with its restored timers and parked addresses."""
        self.processors[partition] = PartitionProcessor(partition)
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

    # -- routing --------------------------------------------------------------------------------------

    def _mailbox(self, target: SdkAddress) -> Mailbox | None:
        processor = self.processors[partition_of(target.id, self.partitions)]
        key = (target.typename, target.id)
        mailbox = processor.mailboxes.get(key)
        if mailbox is None:
            invoker = self.resolve(target.typename)
            if invoker is None:
                return None
            cap = self.max_backlog or invoker.max_batch
            stats = self.stats.get(target.typename)
            if stats is None:
                stats = self.stats[target.typename] = FunctionStats()
            mailbox = processor.mailboxes[key] = Mailbox(target, invoker, processor, cap, stats)
        return mailbox

    def route(self, envelope: Envelope) -> None:
        """Delivers a message to its address's mailbox (or to the dead letters if no function has its type);
        a message for a partition owned by another process goes to the log with the epoch."""
        epoch = self.epoch
        if envelope.target.typename == REPLY_TYPENAME:
            self._reply(envelope)
            return
        if not self.owns(envelope.target):
            epoch.outbound.append(envelope)
            return
        mailbox = self._mailbox(envelope.target)
        if mailbox is None:
            self._dead_letter(envelope.target.typename, envelope.target.id, envelope.caller, envelope.value,
                              f"no function type {envelope.target.typename!r} is bound in the module")
            if envelope.seq is not None:
                epoch.consumed.append(envelope.seq)
            return
        if envelope.seq is None:
            epoch.volatile[envelope] = None
            if len(epoch.volatile) >= self.max_volatile:
                self._commit_now.set()  # what is not committed must stay in memory: commit early
        if mailbox.full:
            self._hold(mailbox, envelope)
            return
        mailbox.backlog.append(envelope)
        self._schedule(mailbox)

    def _reply(self, envelope: Envelope) -> None:
        sink = self.reply_sink
        reason = "no ingress of this module answers requests" if sink is None else sink.reply(self.epoch, envelope)
        if reason is not None:
            self._dead_letter(envelope.target.typename, envelope.target.id, envelope.caller, envelope.value, reason)
        if envelope.seq is not None:
            self.epoch.consumed.append(envelope.seq)

    def _hold(self, mailbox: Mailbox, envelope: Envelope) -> None:
        """A message for a full mailbox: a committed one stays on disk only; one not committed yet waits
        in the overflow for the commit that makes it durable."""
        if envelope.seq is not None and not mailbox.overflow and self.spill:
            if not mailbox.spilled:
                mailbox.spill_after = envelope.seq - 1
            mailbox.spilled += 1
        else:
            mailbox.overflow.append(envelope)
            self.epoch.overflowing.add(mailbox.key)

    def _refill(self, mailbox: Mailbox) -> None:
        """Tops the backlog up from the spilled messages, then from the overflow (kept in order)."""
        room = mailbox.cap - len(mailbox.backlog)
        if room <= 0:
            return
        if mailbox.spilled:
            loaded = self.store.load_inbox(*mailbox.key, mailbox.spill_after, min(room, mailbox.spilled))
            if len(loaded) < min(room, mailbox.spilled):
                log.error("%s/%s: %d spilled messages expected in the inbox, found %d",
                          *mailbox.key, mailbox.spilled, len(loaded))
                mailbox.spilled = len(loaded)
            mailbox.backlog.extend(loaded)
            mailbox.spilled -= len(loaded)
            if loaded:
                mailbox.spill_after = loaded[-1].seq
            room -= len(loaded)
        if not mailbox.spilled:
            overflow = mailbox.overflow
            while overflow and room > 0:
                mailbox.backlog.append(overflow.popleft())
                room -= 1

    def _spill_overflow(self, epoch: Epoch) -> None:
        """After a commit: the overflow is durable now, so it leaves memory (read back by _refill)."""
        for key in epoch.overflowing:
            mailbox = self.processors[partition_of(key[1], self.partitions)].mailboxes.get(key)
            if mailbox is None or not mailbox.overflow:
                continue
            overflow = mailbox.overflow
            if overflow[0].seq is None:
                continue  # all of the next epoch, still committing
            if not mailbox.spilled:
                mailbox.spill_after = overflow[0].seq - 1
            # messages of the next epoch (no seq yet) arrived while this one committed: they stay
            while overflow and overflow[0].seq is not None:
                overflow.popleft()
                mailbox.spilled += 1

    def _schedule(self, mailbox: Mailbox) -> None:
        if mailbox.in_flight is None and mailbox.parked is None and not mailbox.scheduled and mailbox.backlog:
            mailbox.scheduled = True
            self._ready.append(mailbox)
            self._wake.set()

    async def admit(self, target: SdkAddress) -> bool:
        """Waits until ``target`` has room for one more message (back-pressure for ingresses).

        False when no function has the target's type. Only this address waits when its backlog is full;
        the rest of the runtime goes on.
        """
        if not self.owns(target):
            return True  # another process's: it goes to the log with the epoch
        mailbox = self._mailbox(target)
        if mailbox is None:
            return False
        while mailbox.full:
            waiter = asyncio.get_running_loop().create_future()
            mailbox.waiters.append(waiter)
            await waiter
        while len(self.epoch.volatile) >= self.max_volatile:
            self._commit_now.set()
            await self.epoch.done
        return True

    # -- running batches ------------------------------------------------------------------------------

    async def _drain_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.unavailable is not None:
                continue  # the open epoch could not be stored: _write wakes this loop once it can
            ready = self._ready
            started = 0
            turn_ends = time.monotonic() + TURN_SECONDS
            while ready:
                mailbox = ready.popleft()
                mailbox.scheduled = False
                self._start(mailbox)
                started += 1
                # embedded functions run right here, and while they message each other the ready queue
                # never empties: give ingresses, the admin API, completions and commits their turn
                if started % 64 == 0 and time.monotonic() >= turn_ends:
                    await asyncio.sleep(0)
                    turn_ends = time.monotonic() + TURN_SECONDS
            self._commit_if_idle()

    def _start(self, mailbox: Mailbox) -> None:
        if mailbox.in_flight is not None or mailbox.parked is not None or not mailbox.backlog or mailbox.processor.leaving:
            return
        invoker = mailbox.invoker
        backlog = mailbox.backlog
        if len(backlog) == 1:  # the common case, without the comprehensions
            envelope = backlog.popleft()
            batch = [envelope]
            invocations = [(envelope.caller, envelope.value)]
        else:
            batch = [backlog.popleft() for _ in range(min(len(backlog), invoker.max_batch))]
            invocations = [(e.caller, e.value) for e in batch]
        mailbox.in_flight = batch
        self._invocation += 1
        mailbox.invocation = self._invocation
        stats = mailbox.stats
        stats.batches += 1
        stats.messages_in += len(batch)
        if mailbox.spilled or mailbox.overflow:
            self._refill(mailbox)
        if mailbox.waiters:
            self._release(mailbox)
        target = mailbox.address
        if mailbox.is_async:
            task = asyncio.get_running_loop().create_task(self._invoke_async(mailbox, invocations))
            self._invocations.add(task)
            task.add_done_callback(self._invocations.discard)
            return
        try:
            effects = invoker.invoke_sync(target, self.read_state, invocations)
        except InvocationError as e:
            self._park(mailbox, str(e))
            return
        self._complete(mailbox, effects)

    async def _invoke_async(self, mailbox: Mailbox, invocations: list) -> None:
        try:
            effects = await mailbox.invoker.invoke(mailbox.address, self.read_state, invocations)
        except InvocationError as e:
            self._park(mailbox, str(e))
        except Exception as e:  # a transport error after its retries, a bug: park, never crash the runtime
            self._park(mailbox, f"{type(e).__name__}: {e}")
        else:
            self._complete(mailbox, effects)
        self._commit_if_idle(running=1)  # this task is still in the set

    def _commit_if_idle(self, running: int = 0) -> None:
        """Group commit. When someone waits for the open epoch (a request waiting for its answer) and
        nothing is ready to run, commit now: what completes during that commit goes into the next one,
        so commits grow with the load by themselves, and a quiet application answers in about a
        millisecond. Nobody waiting: commit when idle, else every interval, many messages at a time."""
        epoch = self.epoch
        if self.commit_when_idle and not self._ready and (
            epoch.awaited or (not epoch.empty and len(self._invocations) <= running)
        ):
            self._commit_now.set()

    def _complete(self, mailbox: Mailbox, effects: Effects) -> None:
        try:
            self._apply(mailbox, effects)
        except InvocationError as e:
            self._park(mailbox, str(e))
            return
        epoch = self.epoch
        for envelope in mailbox.in_flight:
            if envelope.seq is None:
                del epoch.volatile[envelope]
            else:
                epoch.consumed.append(envelope.seq)
        mailbox.in_flight = None
        if mailbox.backlog:
            self._schedule(mailbox)
        elif mailbox.idle:
            mailbox.processor.mailboxes.pop(mailbox.key, None)

    def _release(self, mailbox: Mailbox) -> None:
        """Wakes ingresses waiting for room in this backlog."""
        while mailbox.waiters:
            waiter = mailbox.waiters.pop()
            if not waiter.done():
                waiter.set_result(None)

    def _park(self, mailbox: Mailbox, reason: str) -> None:
        """The batch failed: its messages go back to the front of the backlog and the address waits."""
        target = mailbox.address
        log.error("parking %s/%s: %s", target.typename, target.id, reason,
                  extra={"address": f"{target.typename}/{target.id}", "invocation": mailbox.invocation})
        if mailbox.in_flight:
            mailbox.backlog.extendleft(reversed(mailbox.in_flight))
        mailbox.in_flight = None
        mailbox.parked = reason
        self.epoch.parked[(target.typename, target.id)] = reason

    # -- effects --------------------------------------------------------------------------------------

    def _apply(self, mailbox: Mailbox, effects: Effects) -> None:
        """Applies a batch's effects to the open epoch, all or nothing: everything is checked first."""
        source = mailbox.address
        now = self.now_ms()
        try:
            outgoing = [
                Envelope(address(m.target_typename, m.target_id), source, m.typed_value) for m in effects.messages
            ]
            delayed = self._check_delayed(source, effects.delayed) if effects.delayed else ()
        except (ValueError, TypeError) as e:
            raise InvocationError(f"{source.typename}/{source.id}: {e}") from e

        stats = mailbox.stats
        stats.out_egress += len(effects.egress)
        for envelope in outgoing:
            if self.owns(envelope.target):
                stats.out_local += 1
            else:
                stats.out_remote += 1
            self.route(envelope)
        epoch = self.epoch
        for envelope, delay_ms, token in delayed:
            if envelope is None:
                cancelled = self.timers.cancel(source.typename, source.id, token)
                if cancelled is not None:
                    self._drop_timer(cancelled)
                continue
            # a timer lives in its sender's partition, which owns its cancellation token
            timer = Timer(self.timers.new_id(), mailbox.processor.partition, now + delay_ms, envelope, token)
            self.timers.add(timer)
            epoch.timers_added[timer.timer_id] = timer
            self._timers_changed.set()
        for egress_message in effects.egress:
            egress = self.egresses.get(egress_message.typename)
            if egress is None:
                self._dead_letter(egress_message.typename, "", source, egress_message.typed_value,
                                  f"no egress {egress_message.typename!r} is defined in the module")
                continue
            try:
                epoch.egress.append(egress.record(egress_message.typename, egress_message.typed_value))
            except ValueError as e:
                self._dead_letter(egress_message.typename, "", source, egress_message.typed_value, str(e))
        self._write_state(mailbox, effects.mutations, now)

    def _check_delayed(self, source: SdkAddress, requests: list) -> list[tuple[Envelope | None, int, str | None]]:
        """The delayed sends and cancellations as (envelope or None, delay, token), refusing a token that
        would be pending twice for this sender (checked in order, so cancel-then-reuse is fine)."""
        checked = []
        added: set[str] = set()
        cancelled: set[str] = set()
        for d in requests:
            if d.is_cancellation:
                added.discard(d.cancellation_token)
                cancelled.add(d.cancellation_token)
                checked.append((None, 0, d.cancellation_token))
                continue
            m = d.message
            token = d.cancellation_token or None
            if token is not None:
                if token in added or (token not in cancelled and self.timers.has_token(source.typename, source.id, token)):
                    raise DuplicateTokenError(
                        f"a delayed message with cancellation token {token!r} is already pending; tokens must be "
                        "unique per sender until the message is delivered or cancelled"
                    )
                added.add(token)
            checked.append((Envelope(address(m.target_typename, m.target_id), source, m.typed_value), d.duration_ms, token))
        return checked

    def _write_state(self, mailbox: Mailbox, mutations: list, now: int) -> None:
        invoker = mailbox.invoker
        typename = mailbox.address.typename
        touch = invoker.after_call(typename)
        if not mutations and not touch:
            return
        values, changed = self._buffer_writes(mailbox.key, mailbox.processor.partition, invoker.specs(typename),
                                              mutations, now)
        if not touch:
            return
        written = {name for name, _ in mutations}
        for spec in touch:  # every call reads all state, so "after call" expirations move on
            if spec.name in written:
                continue
            stored = values.get(spec.name)
            if stored is None:
                continue
            changed.add(spec.name)
            if stored.expire_at is not None and stored.expire_at <= now:
                del values[spec.name]
            else:
                values[spec.name] = StoredValue(stored.value, now + spec.ttl_ms)

    def _buffer_writes(self, key: StateKey, partition: int, specs: typing.Mapping[str, StateSpec],
                       writes: typing.Iterable[tuple[str, TypedValue | None]], now: int) -> tuple[dict[str, StoredValue], set[str]]:
        """Applies writes (None: delete) to the epoch's write buffer of ``key``; returns that buffer."""
        epoch = self.epoch
        entry = epoch.state.get(key)
        if entry is None:  # the first write of this address in the epoch: buffer a copy of its state
            entry = epoch.write_state(key, partition, self._committed(key, partition))
        values, changed = entry
        for name, value in writes:
            changed.add(name)
            if value is None:
                values.pop(name, None)
            else:
                spec = specs.get(name)
                values[name] = StoredValue(value, None if spec is None else spec.expire_at(now))
        return entry

    def _dead_letter(self, target_type: str, target_id: str, caller: SdkAddress | None, value: TypedValue, reason: str) -> None:
        where = f"{target_type}/{target_id}" if target_id else target_type
        log.warning("dead letter for %s: %s", where, reason, extra={"address": where})
        self.epoch.dead_letters.append(DeadLetter(target_type, target_id, caller, value, reason, self.now_ms()))

    # -- state ----------------------------------------------------------------------------------------

    def _state(self, key: StateKey, partition: int) -> dict[str, StoredValue]:
        """The current state of an address: this epoch's write buffer, else the committed cache/store."""
        buffered = self.epoch.state.get(key)
        if buffered is not None:
            return buffered[0]
        return self._committed(key, partition)

    def _committed(self, key: StateKey, partition: int) -> dict[str, StoredValue]:
        """The committed state of an address, from the partition's cache or else the store."""
        cache = self.processors[partition].cache
        values = cache.get(key)
        if values is None:
            values = cache[key] = self.store.load_state(*key)
        return values

    def read_state(self, target: SdkAddress, specs: typing.Mapping[str, StateSpec]) -> dict[str, TypedValue | None]:
        """The unexpired values of ``specs`` for ``target`` (None: no value)."""
        values = self._state((target.typename, target.id), partition_of(target.id, self.partitions))
        now = self.now_ms()
        state = {}
        for name in specs:
            stored = values.get(name)
            if stored is None or (stored.expire_at is not None and stored.expire_at <= now):
                state[name] = None
            else:
                state[name] = stored.value
        return state

    # -- time -----------------------------------------------------------------------------------------

    def _drop_timer(self, timer: Timer) -> None:
        epoch = self.epoch
        if epoch.timers_added.pop(timer.timer_id, None) is None:
            epoch.timers_removed.append(timer.timer_id)

    async def _timer_loop(self) -> None:
        while True:
            due = self.timers.next_due()
            now = self.now_ms()
            if due is not None and due <= now:
                for timer in self.timers.pop_due(now):
                    if self.processors[timer.partition].leaving:
                        # being handed over: the next owner fires it. Fired here, its removal would
                        # be in an epoch after the hand-over's, which the next owner never sees.
                        continue
                    self._drop_timer(timer)
                    self.route(timer.envelope)
                continue
            self._timers_changed.clear()
            await wait_for_event(self._timers_changed, None if due is None else (due - now) / 1000)

    # -- commits --------------------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await wait_for_event(self._commit_now, self.commit_interval)
            self._commit_now.clear()
            # shielded: a commit once begun completes even when stop() cancels this loop
            self._committing = asyncio.get_running_loop().create_task(self.commit_async())
            await asyncio.shield(self._committing)

    def request_commit(self) -> None:
        self._commit_now.set()

    def commit(self) -> None:
        """Commits the open epoch and opens the next, on this thread (at shutdown, and in tests)."""
        epoch, started = self._seal()
        if not epoch.empty:
            self.store.commit(epoch, self.partition_of)
        self._after_commit(epoch, started)

    async def commit_async(self) -> None:
        """The same, with the write and the fsync in the backend's committer thread while the loop goes on
        processing the next epoch: a busy runtime overlaps its commits with its work."""
        async with self._commit_lock:  # one commit at a time: the commit loop's, or a hand-over's
            epoch, started = self._seal()
            if not epoch.empty:
                await self._write(epoch)
            self._after_commit(epoch, started)

    async def _write(self, epoch: Epoch) -> None:
        """Commits a sealed epoch. While the disk is full the runtime stays up: the epoch waits in memory,
        unacknowledged, and is tried again every few seconds; meanwhile ``unavailable`` says why,
        ingresses refuse new messages and no new batch starts, so what waits stays bounded. Epochs
        commit in order, so nothing after this one commits before it does."""
        while True:
            try:
                await self.store.commit_async(epoch, self.partition_of)
            except StoreFullError as e:
                if not self.running:
                    raise  # stopping: stop() says what that means
                if self.unavailable is None:
                    log.error("cannot commit epoch %d: %s. New messages from outside are refused (507) and "
                              "processing waits until there is space; nothing acknowledged is lost",
                              epoch.number, e)
                self.unavailable = str(e)
                await asyncio.sleep(STORE_FULL_RETRY_SECONDS)
                continue
            if self.unavailable is not None:
                log.warning("epoch %d committed: the disk has space again, processing goes on", epoch.number)
                self.unavailable = None
                self._wake.set()
            return

    def _seal(self) -> tuple[Epoch, float]:
        """Closes the open epoch for its commit and opens the next. The sealed epoch's state goes into the
        caches at once, so the next epoch reads it while it commits; nothing leaves the process (answers,
        egress records) before the commit is on disk, and a failed commit stops the runtime."""
        epoch = self.epoch
        self.epoch = Epoch(epoch.number + 1)
        for envelope in epoch.volatile:
            envelope.seq = self._next_seq
            self._next_seq += 1
        for key, (values, _) in epoch.state.items():
            self.processors[epoch.partitions_of_state[key]].cache[key] = values
        for processor in self.processors.values():
            if len(processor.cache) > self.max_cached_addresses // self.partitions:
                processor.cache.clear()  # committed values only: they reload from the store
        for listener in self.on_seal:
            listener(epoch)
        return epoch, time.perf_counter()

    def _after_commit(self, epoch: Epoch, started: float) -> None:
        if not epoch.empty:
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started, epoch.size())
            self.commits += 1
            if epoch.overflowing and self.spill:
                self._spill_overflow(epoch)
            for egress in {id(e): e for e in self.egresses.values()}.values():
                egress.committed(epoch)
        epoch.done.set_result(None)

    # -- operations -------------------------------------------------------------------------------------

    def parked(self) -> list[Mailbox]:
        return [m for p in self.processors.values() for m in p.mailboxes.values() if m.parked is not None]

    def resume(self, target: SdkAddress, skip: bool = False) -> bool:
        """Un-parks ``target``: its waiting messages run again from the one it failed on, or (``skip``)
        from the next one, the failed message becoming a dead letter that says an operator skipped it.
        False when the address is not parked. The change is durable with the next commit."""
        mailbox = self.processors[self.partition_of(target.id)].mailboxes.get((target.typename, target.id))
        if mailbox is None or mailbox.parked is None:
            return False
        if skip and mailbox.backlog:
            envelope = mailbox.backlog.popleft()
            self._dead_letter(target.typename, target.id, envelope.caller, envelope.value,
                              f"skipped by an operator; the address was parked because: {mailbox.parked}")
            if envelope.seq is None:
                self.epoch.volatile.pop(envelope, None)
            else:
                self.epoch.consumed.append(envelope.seq)
        log.warning("resuming %s/%s%s", target.typename, target.id, " after skipping its failed message" if skip else "",
                    extra={"address": f"{target.typename}/{target.id}", "invocation": mailbox.invocation})
        mailbox.parked = None
        self.epoch.parked[mailbox.key] = None
        if mailbox.spilled or mailbox.overflow:
            self._refill(mailbox)
        self._schedule(mailbox)
        self._release(mailbox)
        if mailbox.idle:
            mailbox.processor.mailboxes.pop(mailbox.key, None)
        return True

    def cancel_timer(self, timer_id: int) -> Timer | None:
        """Cancels one pending delayed message by its id (from ``timers.pending_for``), durably with the
        next commit; None when it is not pending (delivered, cancelled, or never existed)."""
        timer = self.timers.remove(timer_id)
        if timer is not None:
            self._drop_timer(timer)
        return timer

    def specs_of(self, typename: str) -> dict[str, StateSpec] | None:
        """The state specs registered for a function type (None: no function has this type)."""
        invoker = self.resolve(typename)
        return None if invoker is None else invoker.specs(typename)

    def state_of(self, target: SdkAddress) -> dict[str, StoredValue]:
        """The current unexpired state of ``target``, including writes not committed yet."""
        values = self._state((target.typename, target.id), self.partition_of(target.id))
        now = self.now_ms()
        return {name: v for name, v in values.items() if v.expire_at is None or v.expire_at > now}

    def write_address_state(self, target: SdkAddress, changes: typing.Mapping[str, TypedValue | None]) -> Epoch:
        """Writes (None: deletes) states of ``target`` from outside a function, as a function's batch
        would: into the open epoch, which is returned so that the caller can wait for its commit.
        ``changes`` must already be checked against the registered specs."""
        specs = self.specs_of(target.typename) or {}
        key = (target.typename, target.id)
        self._buffer_writes(key, self.partition_of(target.id), specs, changes.items(), self.now_ms())
        return self.epoch

    # -- introspection ----------------------------------------------------------------------------------

    def backlog_of(self, target: SdkAddress) -> int:
        mailbox = self.processors[self.partition_of(target.id)].mailboxes.get((target.typename, target.id))
        return 0 if mailbox is None else len(mailbox.backlog)
