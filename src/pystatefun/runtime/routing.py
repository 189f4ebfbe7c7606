"""Routing: a message to its address's mailbox, or to the log when another process owns the address.

Part of the Runtime (processor.py holds its fields): delivery into mailboxes, messages held behind a
full backlog (spilled to the inbox on disk, or kept until their commit), ``admit``, the
back-pressure an ingress waits on for one address, and ``route_record``, with which the Kafka and
Kinesis ingresses deliver a record's messages.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from pystatefun.runtime.envelope import Envelope, partition_of
from pystatefun.runtime.epoch import Epoch
from pystatefun.runtime.flows import FROM_INGRESS
from pystatefun.runtime.mailbox import SPILLED_REQUESTS, FunctionStats, FunctionType, Mailbox, PartitionProcessor
from pystatefun.runtime.replies import REPLY_TYPENAME, waiting_request
from pystatefun.sdk.address import SdkAddress
from pystatefun.wire.request_reply_pb2 import TypedValue

log = logging.getLogger("pystatefun.runtime")

# A parked address takes its messages without its senders waiting: they wait for an operator, not for
# room, and one address's failure must not stop an ingress or a partition. Where the runtime can spill
# (embedded) they wait on disk; where it cannot (the Kafka backend) they wait in memory, up to this many
# past the backlog, and then back-pressure holds their senders as for any full address.
PARKED_OVERFLOW_LIMIT = 10_000


class Routing:
    """Delivery into mailboxes and back-pressure. A part of Runtime (processor.py), which holds the fields used here."""

    def _mailbox(self, target: SdkAddress, processor: PartitionProcessor | None = None) -> Mailbox | None:
        """The mailbox of ``target`` (made when it has none), in ``processor`` if the caller has it at
        hand; None when no function has the target's type."""
        if processor is None:
            processor = self.processors[partition_of(target.id, self.partitions)]
        key = (target.typename, target.id)
        mailbox = processor.mailboxes.get(key)
        if mailbox is None:
            kind = self._function_types.get(target.typename)
            if kind is None:
                kind = self._function_type(target.typename)
                if kind is None:
                    return None
            mailbox = processor.mailboxes[key] = Mailbox(target, kind, processor)
        return mailbox

    def _function_type(self, typename: str) -> FunctionType | None:
        """What the mailboxes of ``typename`` share, looked up once (None: no function has the type)."""
        invoker = self.resolve(typename)
        if invoker is None:
            return None
        stats = self.stats.get(typename)
        if stats is None:
            stats = self.stats[typename] = FunctionStats()
        kind = self._function_types[typename] = FunctionType(invoker, invoker.is_async(typename),
                                                            self.max_backlog or invoker.max_batch, stats)
        return kind

    def route(self, envelope: Envelope, source_partition: int | None = None) -> bool:
        """Delivers a message to its address's mailbox (or to the dead letters if no function has its type);
        a message for a partition owned by another process goes to the log with the epoch (and the answer
        is False: not delivered here).

        ``source_partition``: the partition whose owner reads the ingress source the message comes from (a
        Kafka or Kinesis ingress on the Kafka backend). A message for any other partition goes through the
        log even when this process runs that partition: the source and the partition can change hands
        apart, and the messages of the source that went through the log before must stay ahead of it."""
        epoch = self.epoch
        target = envelope.target
        if target.typename == REPLY_TYPENAME:
            self._reply(envelope)
            return True
        partition = partition_of(target.id, self.partitions)
        processor = self.processors.get(partition)
        if processor is None or (source_partition is not None and partition != source_partition):
            epoch.outbound.append(envelope)
            return False
        mailbox = processor.mailboxes.get((target.typename, target.id))  # _mailbox, inlined for an existing one
        if mailbox is None:
            mailbox = self._mailbox(target, processor)
        if mailbox is None:
            self._dead_letter(target.typename, target.id, envelope.caller, envelope.value,
                              f"no function type {target.typename!r} is bound in the module")
            if envelope.seq is not None:
                epoch.consumed.append(envelope.seq)
            return True
        if envelope.seq is None:
            volatile = epoch.volatile
            volatile[envelope] = None
            if len(volatile) >= self.max_volatile:
                self._commit_now.set()  # what is not committed must stay in memory: commit early
            if processor.held is not None:  # not from the log, which the partition is still catching up with
                processor.held.append(envelope)
                return True
        if mailbox.spilled or mailbox.overflow or len(mailbox.backlog) >= mailbox.cap:  # Mailbox.full, inlined
            self._hold(mailbox, envelope)
            return True
        mailbox.backlog.append(envelope)
        if mailbox.parked is not None:
            self._tell_parked(mailbox, envelope)
            self._commit_if_idle()  # nothing runs for it: its sender must not wait for the commit interval
        elif not mailbox.scheduled and mailbox.in_flight is None:  # _schedule, inlined
            mailbox.scheduled = True
            self._ready.append(mailbox)
            if not self._draining:
                self._wake.set()
        return True

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
            self._note_spilled_request(mailbox, envelope)
        else:
            mailbox.overflow.append(envelope)
            self.epoch.overflowing.add(mailbox.key)
        if mailbox.parked is not None:
            self._tell_parked(mailbox, envelope)
            self._commit_if_idle()

    def _note_spilled_request(self, mailbox: Mailbox, envelope: Envelope) -> None:
        """Remembers a spilled message that a request waits on (Mailbox.spilled_requests)."""
        reply_id = waiting_request(envelope)
        if reply_id is not None:
            if mailbox.spilled_requests is None:
                mailbox.spilled_requests = collections.deque(maxlen=SPILLED_REQUESTS)
            mailbox.spilled_requests.append((envelope.seq, reply_id))

    def _takes_while_parked(self, mailbox: Mailbox) -> bool:
        """Whether a full mailbox takes one more message at once because its address is parked
        (PARKED_OVERFLOW_LIMIT)."""
        return mailbox.parked is not None and (self.spill or len(mailbox.overflow) < PARKED_OVERFLOW_LIMIT)

    def parked_and_full(self, target: SdkAddress) -> str | None:
        """Why a message for ``target`` cannot go in until an operator acts: its address is parked and
        holds as many messages as it may (PARKED_OVERFLOW_LIMIT); else None."""
        processor = self.processors.get(partition_of(target.id, self.partitions))
        mailbox = None if processor is None else processor.mailboxes.get((target.typename, target.id))
        if mailbox is None or mailbox.parked is None or not mailbox.full or self._takes_while_parked(mailbox):
            return None
        return (f"{target.typename}/{target.id} is parked and holds {len(mailbox.backlog) + len(mailbox.overflow)} "
                f"messages, the most a parked address keeps; it takes more once it is resumed or its failed message "
                f"skipped. It is parked because: {mailbox.parked}")

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
                requests = mailbox.spilled_requests
                while requests and requests[0][0] <= mailbox.spill_after:  # in the backlog now
                    requests.popleft()
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
                self._note_spilled_request(mailbox, overflow.popleft())
                mailbox.spilled += 1

    def _schedule(self, mailbox: Mailbox) -> None:
        if mailbox.in_flight is None and mailbox.parked is None and not mailbox.scheduled and mailbox.backlog:
            mailbox.scheduled = True
            self._ready.append(mailbox)
            if not self._draining:
                self._wake.set()

    def has_room(self, target: SdkAddress) -> bool:
        """Whether a message for ``target`` can go in now, i.e. admit() would not wait: ingresses ask this
        first and await admit() only when it says no (a coroutine per message costs more than the check)."""
        processor = self.processors.get(partition_of(target.id, self.partitions))
        if processor is None:
            return True  # another process's
        mailbox = processor.mailboxes.get((target.typename, target.id))
        return ((mailbox is None or not mailbox.full or self._takes_while_parked(mailbox))
                and len(self.epoch.volatile) < self.max_volatile)

    def caught_up(self, partition: int) -> None:
        """The partition's log is read up to where it ended when the partition was assigned (the Kafka
        backend): the messages held meanwhile go to their mailboxes, behind those read from the log."""
        processor = self.processors.get(partition)
        if processor is None or processor.held is None:
            return
        held, processor.held = processor.held, None
        for envelope in held:
            self.route(envelope)

    def route_record(self, ingress_id: str, targets: list[SdkAddress], value: TypedValue, trace: str | None,
                     source_partition: int | None) -> int:
        """The messages of one ingress record, one per target, into the open epoch (where the ingress puts
        the record's position next), once each target has room (``has_room``, else ``admit``, which the
        ingress awaits itself: a coroutine per record would cost more than the check): each routed
        (``route``, with ``source_partition``) and counted in the flows. Returns how many went to the log."""
        to_log = 0
        for target in targets:
            if not self.route(Envelope(target, None, value, None, trace), source_partition):
                to_log += 1
            self.flows.count(FROM_INGRESS, ingress_id, target.typename)
        return to_log

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
        while mailbox.full and not self._takes_while_parked(mailbox):
            if mailbox.parked is not None:
                log.warning("%s", self.parked_and_full(target) + "; the sender of its next message waits until then",
                            extra={"address": f"{target.typename}/{target.id}"})
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
