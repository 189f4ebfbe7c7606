"""Effects: what a completed batch decided, applied to the open epoch, and the state reads that see it.

Part of the Runtime (processor.py holds its fields). A batch's messages, delayed messages, cancellations,
egress records and state mutations are all checked first and then applied together, all or nothing. State
writes go to the epoch's write buffer; reads see that buffer, then the partition's committed cache, then
the store.
"""

from __future__ import annotations

import logging
import typing

from pystatefun.runtime.envelope import Envelope, address, partition_of
from pystatefun.runtime.epoch import DeadLetter, StateKey, StoredValue, Timer
from pystatefun.runtime.flows import SENT, TO_EGRESS
from pystatefun.runtime.invokers import Effects, InvocationError
from pystatefun.runtime.mailbox import Mailbox, PartitionProcessor
from pystatefun.runtime.specs import NONE, StateSpec
from pystatefun.runtime.timers import DuplicateTokenError
from pystatefun.sdk.address import SdkAddress
from pystatefun.wire.request_reply_pb2 import TypedValue

log = logging.getLogger("pystatefun.runtime")


class EffectApplication:
    """Applying a batch's effects to the open epoch; reading state through its write buffer. A part of Runtime (processor.py), which holds the fields used here."""

    def _apply(self, mailbox: Mailbox, effects: Effects) -> None:
        """Applies a batch's effects to the open epoch, all or nothing: everything is checked first."""
        source = mailbox.address
        trace = mailbox.trace  # what the messages carry: the batch's traceparent (None: not traced)
        try:
            outgoing = []  # a loop, not a comprehension: one call less per batch (most send one message)
            for m in effects.messages:
                outgoing.append(Envelope(address(m.target_typename, m.target_id), source, m.typed_value, None, trace))
            delayed = self._check_delayed(source, effects.delayed, trace) if effects.delayed else ()
        except (ValueError, TypeError) as e:
            raise InvocationError(f"{source.typename}/{source.id}: {e}") from e

        stats = mailbox.stats
        stats.out_egress += len(effects.egress)
        flows = self.flows
        for envelope in outgoing:
            flows.count(SENT, source.typename, envelope.target.typename)
            if self.route(envelope):
                stats.out_local += 1
            else:
                stats.out_remote += 1
        epoch = self.epoch
        now = self.now_ms() if delayed else None
        for envelope, delay_ms, token in delayed:
            if envelope is None:
                cancelled = self.timers.cancel(source.typename, source.id, token)
                if cancelled is not None:
                    self._drop_timer(cancelled)
                continue
            flows.count(SENT, source.typename, envelope.target.typename)
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
                record = egress.record(egress_message.typename, egress_message.typed_value)
            except ValueError as e:
                self._dead_letter(egress_message.typename, "", source, egress_message.typed_value, str(e))
                continue
            epoch.egress.append(record)
            flows.count(TO_EGRESS, source.typename, egress_message.typename)
            if mailbox.span is not None:
                self.tracing.egress(mailbox.span, egress_message.typename, record.topic)
        # the state writes, and the "after call" expirations every call moves on (every call reads all state)
        mutations = effects.mutations
        specs, touch = mailbox.invoker.state_rules(source.typename)
        if touch:
            self._touch_after_call(mailbox, specs, touch, mutations)
        elif mutations:
            self._buffer_writes(mailbox.key, mailbox.processor, specs, mutations)

    def _check_delayed(self, source: SdkAddress, requests: list,
                       trace: str | None) -> list[tuple[Envelope | None, int, str | None]]:
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
            envelope = Envelope(address(m.target_typename, m.target_id), source, m.typed_value, None, trace)
            checked.append((envelope, d.duration_ms, token))
        return checked

    def _touch_after_call(self, mailbox: Mailbox, specs: typing.Mapping[str, StateSpec],
                          touch: tuple[StateSpec, ...], mutations: list) -> None:
        """Buffers a batch's state writes, and moves on the expiry of the values it did not write whose
        specs expire after a call (``touch``)."""
        values, changed = self._buffer_writes(mailbox.key, mailbox.processor, specs, mutations)
        now = self.now_ms()
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

    def _buffer_writes(self, key: StateKey, processor: PartitionProcessor, specs: typing.Mapping[str, StateSpec],
                       writes: typing.Iterable[tuple[str, TypedValue | None]]) -> tuple[dict[str, StoredValue], set[str]]:
        """Applies writes (None: delete) to the epoch's write buffer of ``key``; returns that buffer."""
        epoch = self.epoch
        entry = epoch.state.get(key)
        if entry is None:  # the first write of this address in the epoch: buffer a copy of its state
            committed = processor.cache.get(key)  # _committed, inlined for the common case
            entry = epoch.state[key] = (dict(committed if committed is not None else self._committed(key, processor)), set())
            epoch.partitions_of_state[key] = processor.partition
        values, changed = entry
        now = None  # asked for once, and only for a value that expires
        for name, value in writes:
            changed.add(name)
            if value is None:
                values.pop(name, None)
                continue
            spec = specs.get(name)
            if spec is None or spec.mode == NONE:
                values[name] = StoredValue(value, None)
            else:
                if now is None:
                    now = self.now_ms()
                values[name] = StoredValue(value, now + spec.ttl_ms)
        return entry

    def _dead_letter(self, target_type: str, target_id: str, caller: SdkAddress | None, value: TypedValue, reason: str) -> None:
        where = f"{target_type}/{target_id}" if target_id else target_type
        log.warning("dead letter for %s: %s", where, reason, extra={"address": where})
        self.epoch.dead_letters.append(DeadLetter(target_type, target_id, caller, value, reason, self.now_ms()))

    def _state(self, key: StateKey, processor: PartitionProcessor) -> dict[str, StoredValue]:
        """The current state of an address: this epoch's write buffer, else the committed cache/store."""
        buffered = self.epoch.state.get(key)
        if buffered is not None:
            return buffered[0]
        return self._committed(key, processor)

    def _committed(self, key: StateKey, processor: PartitionProcessor) -> dict[str, StoredValue]:
        """The committed state of an address, from the partition's cache or else the store."""
        cache = processor.cache
        values = cache.get(key)
        if values is None:
            values = cache[key] = self.store.load_state(*key)
        return values

    def read_state(self, target: SdkAddress, specs: typing.Mapping[str, StateSpec]) -> dict[str, TypedValue | None]:
        """The unexpired values of ``specs`` for ``target`` (None: no value)."""
        key = (target.typename, target.id)
        buffered = self.epoch.state.get(key)  # _state and _committed, inlined: once per batch
        if buffered is not None:
            values = buffered[0]
        else:
            processor = self.processors[partition_of(target.id, self.partitions)]
            values = processor.cache.get(key)
            if values is None:
                values = self._committed(key, processor)
        if not values:
            return dict.fromkeys(specs)
        now = None
        state = {}
        for name in specs:
            stored = values.get(name)
            if stored is None:
                state[name] = None
                continue
            expire_at = stored.expire_at
            if expire_at is not None:
                if now is None:
                    now = self.now_ms()
                if expire_at <= now:
                    state[name] = None
                    continue
            state[name] = stored.value
        return state
