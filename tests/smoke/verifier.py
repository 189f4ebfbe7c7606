"""The verification egress and the checker (SmokeRunner.awaitVerificationSuccess, statefun-spec §6.5).

A background consumer reads the verification topic with ``isolation.level=read_committed``: a result with
actual > expected fails at once ("over-counted"); actual == expected marks the instance verified; less is
still in flight. An instance can report expected == actual while a duplicate is still on its way, so once
all are verified a confirmation round asks every instance again, writing to a topic of its own: the run
passes only when all of them confirm. A result lower than an earlier one of the same instance (a committed
increment undone) fails as well. It also counts the discard topic's records per key: every ``egress`` command of an
accepted message must come out exactly once, so more than expected there fails as well.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


class OverCounted(AssertionError):
    pass


class Verifier:
    def __init__(self, bootstrap: str, verification_topic: str, confirmation_topic: str, discard_topic: str,
                 instances: int, group: str):
        self.bootstrap = bootstrap
        self.verification_topic, self.discard_topic = verification_topic, discard_topic
        self.confirmation_topic = confirmation_topic
        self.confirmed: set[int] = set()
        self.highest: dict[int, int] = {}
        self.instances = instances
        self.group = group
        self.verified: set[int] = set()
        self.last: dict[int, tuple[int, int]] = {}   # instance -> last (expected, actual) seen
        self.discarded: Counter = Counter()
        self.results = 0
        self.failure: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="verifier", daemon=True)
        self.expected_egress: dict[int, int] | None = None   # set once sending is over

    def start(self) -> Verifier:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                             "isolation.level": "read_committed", "enable.auto.commit": False})
        try:
            assignment = []
            for topic in (self.verification_topic, self.confirmation_topic, self.discard_topic):
                metadata = consumer.list_topics(topic, timeout=30).topics[topic]
                assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
            consumer.assign(assignment)
            while not self._stop.is_set():
                for record in consumer.consume(500, timeout=0.2):
                    if record.error() is not None:
                        continue
                    if record.topic() == self.verification_topic:
                        self._result(json.loads(record.value()), self.verified)
                    elif record.topic() == self.confirmation_topic:
                        self._result(json.loads(record.value()), self.confirmed)
                    else:
                        self._discarded(int(record.key()))
        except Exception as e:  # noqa: BLE001 - reported as the run's failure
            with self._lock:
                self.failure = self.failure or f"verification consumer failed: {e!r}"
        finally:
            consumer.close()

    def _result(self, result: dict, into: set[int]) -> None:
        instance, expected, actual = result["id"], result["expected"], result["actual"]
        with self._lock:
            self.results += 1
            self.last[instance] = (expected, actual)
            if actual > expected:
                self.failure = self.failure or (f"over-counted: instance {instance} reports actual {actual} > "
                                                f"expected {expected}")
            elif actual < self.highest.get(instance, 0):
                self.failure = self.failure or (f"state went backwards: instance {instance} reports actual {actual} "
                                                f"after {self.highest[instance]} before")
            elif actual == expected:
                into.add(instance)
            self.highest[instance] = max(actual, self.highest.get(instance, 0))

    def _discarded(self, instance: int) -> None:
        with self._lock:
            self.discarded[instance] += 1
            expected = (self.expected_egress or {}).get(instance)
            if expected is not None and self.discarded[instance] > expected:
                self.failure = self.failure or (f"egress duplicated: instance {instance} wrote "
                                                f"{self.discarded[instance]} discard records, expected {expected}")

    def set_expected_egress(self, expected: dict[int, int]) -> None:
        with self._lock:
            self.expected_egress = expected
            for instance, count in self.discarded.items():
                if count > expected.get(instance, 0):
                    self.failure = self.failure or (f"egress duplicated: instance {instance} wrote {count} "
                                                    f"discard records, expected {expected.get(instance, 0)}")

    def unverified(self) -> list[int]:
        with self._lock:
            return [i for i in range(self.instances) if i not in self.verified]

    def unconfirmed(self) -> list[int]:
        with self._lock:
            return [i for i in range(self.instances) if i not in self.confirmed]

    def egress_off(self) -> dict[int, tuple[int, int]]:
        """Instances whose discard records are not (yet) as many as expected: (expected, seen)."""
        with self._lock:
            expected = self.expected_egress or {}
            keys = set(expected) | set(self.discarded)
            return {k: (expected.get(k, 0), self.discarded[k]) for k in sorted(keys)
                    if expected.get(k, 0) != self.discarded[k]}

    def check(self) -> None:
        with self._lock:
            if self.failure:
                raise OverCounted(self.failure)
