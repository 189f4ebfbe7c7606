"""Scheduling: which mailbox runs next, running its batch, and what comes of it.

Part of the Runtime (processor.py holds its fields). The drain loop starts the batches of ready mailboxes
(an embedded function runs right there, a remote one in a task of its own) and takes turns with the rest
of the event loop; a batch completes into the open epoch or parks its address. Due timers are routed
from here too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

from pystatefun.runtime.envelope import Envelope
from pystatefun.runtime.epoch import Timer
from pystatefun.runtime.invokers import Effects, InvocationError, UnknownFunctionTypeError
from pystatefun.runtime.mailbox import Mailbox
from pystatefun.runtime.replies import waiting_request
from pystatefun.runtime.waiting import wait_for_event
from pystatefun.tracing import DEAD_LETTER, OK, PARKED

log = logging.getLogger("pystatefun.runtime")

# how long the drain loop runs batches before the rest of the loop gets a turn: what a request from
# outside (a health check, a message) waits at most behind the runtime's own work
TURN_SECONDS = 0.005


class Scheduling:
    """Running batches and due timers. A part of Runtime (processor.py), which holds the fields used here."""

    async def _drain_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.unavailable is not None:
                continue  # the open epoch could not be stored: _write wakes this loop once it can
            ready = self._ready
            started = 0
            turn_ends = time.monotonic() + TURN_SECONDS
            self._draining = True  # what is scheduled meanwhile needs no wake-up: this loop runs it
            try:
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
            finally:
                self._draining = False
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
        mailbox.started = time.perf_counter()
        self._invocation += 1
        mailbox.invocation = self._invocation
        stats = mailbox.stats
        stats.batches += 1
        stats.messages_in += len(batch)
        if mailbox.spilled or mailbox.overflow:
            self._refill(mailbox)
        if mailbox.waiters:
            self._release(mailbox)
        tracing = self.tracing
        if tracing is not None:  # off, this and _finish's are all that tracing costs a batch
            span = tracing.batch(mailbox.address, batch, mailbox.invocation, mailbox.processor.partition)
            if span is not None:
                mailbox.span, mailbox.trace = span, tracing.traceparent(span)
                # in the span's context: the function's own spans, the remote call's and the log lines of
                # the batch (its task's too: a task copies the context it is made in) join its trace
                tracing.context(span).run(self._run, mailbox, invocations)
                return
        self._run(mailbox, invocations)

    def _run(self, mailbox: Mailbox, invocations: list) -> None:
        """Invokes the function with the batch: an embedded one right here, a remote one in a task."""
        if mailbox.is_async:
            task = asyncio.get_running_loop().create_task(self._invoke_async(mailbox, invocations))
            self._invocations.add(task)
            task.add_done_callback(self._invocations.discard)
            return
        try:
            effects = mailbox.invoker.invoke_sync(mailbox.address, self.read_state, invocations)
        except InvocationError as e:
            self._park(mailbox, str(e))
            return
        self._complete(mailbox, effects)

    async def _invoke_async(self, mailbox: Mailbox, invocations: list) -> None:
        try:
            effects = await mailbox.invoker.invoke(mailbox.address, self.read_state, invocations)
        except UnknownFunctionTypeError as e:
            self._undeliverable(mailbox, str(e))
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
        # FunctionStats.ran, inlined (once per batch)
        stats = mailbox.stats
        stats.latencies.append(time.perf_counter() - mailbox.started)
        size = len(mailbox.in_flight)
        if size > stats.largest_batch:
            stats.largest_batch = size
        self._finish(mailbox)

    def _undeliverable(self, mailbox: Mailbox, reason: str) -> None:
        """The batch's function type does not exist at its endpoint: its messages become dead letters, and
        the address is not parked, so that made-up type names (a namespace binding takes any) cannot
        fill /parked; what waits behind the batch goes on, and meets the same refusal."""
        target = mailbox.address
        for envelope in mailbox.in_flight:
            self._dead_letter(target.typename, target.id, envelope.caller, envelope.value, reason)
        self._finish(mailbox, DEAD_LETTER)

    def _finish(self, mailbox: Mailbox, outcome: str = OK) -> None:
        """The batch in flight is done with: its messages are consumed, and the mailbox goes on."""
        if mailbox.span is not None:
            self._end_span(mailbox, outcome)
        epoch = self.epoch
        for envelope in mailbox.in_flight:
            if envelope.seq is None:
                del epoch.volatile[envelope]
            else:
                epoch.consumed.append(envelope.seq)
        mailbox.in_flight = None
        if mailbox.backlog:
            self._schedule(mailbox)
        elif not mailbox.listed and mailbox.parked is None and not mailbox.waiters and not mailbox.spilled and not mailbox.overflow:
            self._list_idle(mailbox)

    def _list_idle(self, mailbox: Mailbox) -> None:
        mailbox.listed = True
        self._went_idle.append(mailbox)

    def _drop_idle_mailboxes(self) -> None:
        """Drops the mailboxes that stayed idle for a whole commit interval (called by the first seal of
        each interval). Not at once: an address that gets a message every few milliseconds would have a
        mailbox made and dropped for every message; this way one serves all of its messages for as long
        as it is in use, and memory stays bounded by what two intervals touch. A mailbox is listed once,
        when it goes idle; a sweep that finds it idle notes its batch number, and the next sweep drops it
        if no batch ran since."""
        kept = []
        for mailbox in self._went_idle:
            mailboxes = mailbox.processor.mailboxes
            if mailboxes.get(mailbox.key) is not mailbox:
                mailbox.listed = False  # gone already (a hand-over dropped its partition)
            elif not (mailbox.in_flight is None and not mailbox.backlog and mailbox.parked is None  # Mailbox.idle
                      and not mailbox.waiters and not mailbox.spilled and not mailbox.overflow):
                mailbox.listed = False  # busy again: listed anew when it goes idle
            elif mailbox.seen == mailbox.invocation:
                mailbox.listed = False
                del mailboxes[mailbox.key]
            else:
                mailbox.seen = mailbox.invocation
                kept.append(mailbox)
        self._went_idle = kept

    def _park(self, mailbox: Mailbox, reason: str) -> None:
        """The batch failed: its messages go back to the front of the backlog and the address waits."""
        target = mailbox.address
        log.error("parking %s/%s: %s", target.typename, target.id, reason,
                  extra={"address": f"{target.typename}/{target.id}", "invocation": mailbox.invocation})
        if mailbox.in_flight:
            mailbox.stats.ran(mailbox.started, len(mailbox.in_flight), False)
            mailbox.backlog.extendleft(reversed(mailbox.in_flight))
        mailbox.in_flight = None
        mailbox.parked = reason
        if mailbox.span is not None:
            self._end_span(mailbox, PARKED, reason)
        self.epoch.parked[(target.typename, target.id)] = reason
        for envelope in itertools.chain(mailbox.backlog, mailbox.overflow):
            self._tell_parked(mailbox, envelope)
        for _, reply_id in mailbox.spilled_requests or ():
            self._tell_request_parked(mailbox, reply_id)
        self._release(mailbox)  # senders waiting for room take a parked address's messages at once (routing.py)

    def _end_span(self, mailbox: Mailbox, outcome: str, reason: str | None = None) -> None:
        self.tracing.batch_ended(mailbox.span, outcome, reason)
        mailbox.span = mailbox.trace = None

    def _tell_parked(self, mailbox: Mailbox, envelope: Envelope) -> None:
        """A message held at a parked address: if a request waits for its reply, it learns why now."""
        reply_id = waiting_request(envelope)
        if reply_id is not None:
            self._tell_request_parked(mailbox, reply_id)

    def _tell_request_parked(self, mailbox: Mailbox, reply_id: str) -> None:
        sink = self.reply_sink
        if sink is not None:
            target = mailbox.address
            sink.parked(reply_id, f"{target.typename}/{target.id}", mailbox.parked)

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
