"""The expected count per instance (FunctionStateTracker, statefun-spec §6.5), fed only with messages the
runtime durably accepted: an HTTP 202 (answered after the epoch holding the message committed), or a
Kafka delivery report of the idempotent producer."""

from __future__ import annotations

import threading
from collections import Counter

from .commands import SourceCommand, effects


class Tracker:
    def __init__(self, instances: int):
        self.instances = instances
        self._lock = threading.Lock()
        self.increments: Counter = Counter()
        self.egress: Counter = Counter()
        self.accepted = 0
        self._seen: set[int] = set()

    def accepted_message(self, command: SourceCommand) -> None:
        """Counts a message once, however often its acceptance is reported."""
        result = effects(command.target, command.commands)
        with self._lock:
            if command.index in self._seen:
                return
            self._seen.add(command.index)
            self.accepted += 1
            self.increments.update(result.increments)
            self.egress.update(result.egress)

    def expected(self, instance: int) -> int:
        with self._lock:
            return self.increments[instance]

    def expected_egress(self) -> dict[int, int]:
        with self._lock:
            return dict(self.egress)
