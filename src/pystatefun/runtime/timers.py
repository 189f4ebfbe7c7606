"""Delayed messages on durable timers, indexed by due time and by (sender, cancellation token)."""

from __future__ import annotations

import heapq

from pystatefun.runtime.epoch import Timer


class DuplicateTokenError(ValueError):
    """A second pending delayed message with the same cancellation token from the same address."""


class TimerService:
    """The pending timers of the partitions this process owns (all of them, on the embedded backend)."""

    def __init__(self, next_id: int = 1):
        self._heap: list[tuple[int, int]] = []  # (due_ms, timer_id); cancelled ids are skipped lazily
        self._timers: dict[int, Timer] = {}
        self._by_token: dict[tuple[str, str, str], int] = {}
        self._next_id = next_id

    def __len__(self) -> int:
        return len(self._timers)

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def has_token(self, sender_typename: str, sender_id: str, token: str) -> bool:
        return (sender_typename, sender_id, token) in self._by_token

    def add(self, timer: Timer) -> None:
        key = timer.sender_key
        if key is not None and key in self._by_token:
            raise DuplicateTokenError(f"{key[0]}/{key[1]} already has a pending delayed message with token {key[2]!r}")
        self._timers[timer.timer_id] = timer
        key = timer.sender_key
        if key is not None:
            self._by_token[key] = timer.timer_id
        heapq.heappush(self._heap, (timer.due_ms, timer.timer_id))

    def cancel(self, sender_typename: str, sender_id: str, token: str) -> Timer | None:
        """Removes the pending timer ``token`` of that sender; None when there is none (best effort)."""
        timer_id = self._by_token.pop((sender_typename, sender_id, token), None)
        return None if timer_id is None else self._timers.pop(timer_id, None)

    def next_due(self) -> int | None:
        heap = self._heap
        while heap and heap[0][1] not in self._timers:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now_ms: int) -> list[Timer]:
        """The timers due at ``now_ms``, in due order, removed from the service."""
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            _, timer_id = heapq.heappop(heap)
            timer = self._timers.pop(timer_id, None)
            if timer is None:
                continue  # cancelled
            key = timer.sender_key
            if key is not None and self._by_token.get(key) == timer_id:
                del self._by_token[key]
            due.append(timer)
        return due

    def remove(self, timer_id: int) -> Timer | None:
        """Removes one pending timer by id (an operator's cancel); None when it is not pending."""
        timer = self._timers.pop(timer_id, None)
        if timer is not None:
            key = timer.sender_key
            if key is not None and self._by_token.get(key) == timer_id:
                del self._by_token[key]
        return timer

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forgets the timers of partitions handed to another process (they live on in its changelog)."""
        for timer in [t for t in self._timers.values() if t.partition in partitions]:
            self.remove(timer.timer_id)

    def pending_for(self, typename: str, id: str) -> list[Timer]:
        """The pending delayed messages sent by address ``typename``/``id``, soonest first."""
        sent = [t for t in self._timers.values() if t.envelope.caller and (t.envelope.caller.typename, t.envelope.caller.id) == (typename, id)]
        return sorted(sent, key=lambda t: (t.due_ms, t.timer_id))
