"""Operations: what the admin API does to a running application, as a function's batch would.

Part of the Runtime (processor.py holds its fields): parked addresses resumed or skipped, delayed
messages cancelled, state read and written from outside, backlogs inspected. Every change goes into the
open epoch and is durable with its commit.
"""

from __future__ import annotations

import itertools
import logging
import typing

from pystatefun.runtime.epoch import Epoch, StoredValue, Timer
from pystatefun.runtime.mailbox import Mailbox
from pystatefun.runtime.specs import StateSpec
from pystatefun.runtime.replies import waiting_request
from pystatefun.sdk.address import SdkAddress
from pystatefun.wire.request_reply_pb2 import TypedValue

log = logging.getLogger("pystatefun.runtime")


class Operations:
    """Admin operations on the running application. A part of Runtime (processor.py), which holds the fields used here."""

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
        if mailbox.idle and not mailbox.listed:
            self._list_idle(mailbox)
        return True

    def parked_holding(self, target: SdkAddress, reply_id: str) -> str | None:
        """Why ``target`` is parked, when the message of the request waiting on ``reply_id`` is among the
        ones it holds (a keyed retry of that request learns it at once); else None. Messages spilled to
        disk are known by the requests noted when they spilled (Mailbox.spilled_requests; a restart notes
        them again as it reads the inbox back): the disk is not read, so that retries cannot stall the loop."""
        mailbox = self.processors[self.partition_of(target.id)].mailboxes.get((target.typename, target.id))
        if mailbox is None or mailbox.parked is None:
            return None
        for envelope in itertools.chain(mailbox.backlog, mailbox.overflow):
            if waiting_request(envelope) == reply_id:
                return mailbox.parked
        if mailbox.spilled_requests and any(waiting == reply_id for _, waiting in mailbox.spilled_requests):
            return mailbox.parked
        return None

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
        values = self._state((target.typename, target.id), self.processors[self.partition_of(target.id)])
        now = self.now_ms()
        return {name: v for name, v in values.items() if v.expire_at is None or v.expire_at > now}

    def write_address_state(self, target: SdkAddress, changes: typing.Mapping[str, TypedValue | None]) -> Epoch:
        """Writes (None: deletes) states of ``target`` from outside a function, as a function's batch
        would: into the open epoch, which is returned so that the caller can wait for its commit.
        ``changes`` must already be checked against the registered specs."""
        specs = self.specs_of(target.typename) or {}
        key = (target.typename, target.id)
        self._buffer_writes(key, self.processors[self.partition_of(target.id)], specs, changes.items())
        return self.epoch

    def backlog_of(self, target: SdkAddress) -> int:
        mailbox = self.processors[self.partition_of(target.id)].mailboxes.get((target.typename, target.id))
        return 0 if mailbox is None else len(mailbox.backlog)
