"""Routing: a message to its address's mailbox, or to the log when another process owns the address.

Part of the Runtime (processor.py holds its fields): delivery into mailboxes, messages held behind a
full backlog (spilled to the inbox on disk, or kept until their commit), and ``admit``, the
back-pressure an ingress waits on for one address.
"""

from __future__ import annotations

import asyncio
import logging

from pystatefun.runtime.envelope import Envelope, partition_of
from pystatefun.runtime.epoch import Epoch
from pystatefun.runtime.mailbox import FunctionStats, Mailbox
from pystatefun.runtime.replies import REPLY_TYPENAME
from pystatefun.sdk.address import SdkAddress

log = logging.getLogger("pystatefun.runtime")


class Routing:
    """Delivery into mailboxes and back-pressure. A part of Runtime (processor.py), which holds the fields used here."""

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
        if mailbox.parked is not None:
            self._tell_parked(mailbox, envelope)
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

    def _release(self, mailbox: Mailbox) -> None:
        """Wakes ingresses waiting for room in this backlog."""
        while mailbox.waiters:
            waiter = mailbox.waiters.pop()
            if not waiter.done():
                waiter.set_result(None)
