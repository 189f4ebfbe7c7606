"""Driving the runtime through its real ingresses, counting a message only once it is durably accepted.

HTTP (the playground ingress): each message is PUT with ``Idempotency-Key: <run>-<index>`` and retried with
the same key after a connection error or a 5xx (the runtime killed or restarting) until it is answered 202,
which the runtime sends only after the epoch holding the message committed; then it counts.
Kafka: the record (key = instance id, value = the commands JSON) counts when the idempotent producer's
delivery report says it was delivered.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
import typing
from collections import Counter

from confluent_kafka import Producer

from .commands import COMMANDS_TYPENAME, FUNCTION, SourceCommand


class HttpIngress:
    """``ports()``: the ingress ports to use (one runtime, or every Kafka worker: any worker takes any request,
    handing those with an Idempotency-Key to the owner of the target's partition). Each sending thread
    keeps to one of them and moves on to the next after a failure."""

    def __init__(self, ports: typing.Callable[[], list[int]], run_id: str):
        self.ports, self.run_id = ports, run_id
        self.counts: Counter = Counter()      # "retries", statuses seen
        self._local = threading.local()
        self._threads = itertools.count()

    def port(self) -> int:
        if not hasattr(self._local, "choice"):
            self._local.choice = next(self._threads)
        ports = self.ports()
        return ports[self._local.choice % len(ports)]

    def _connection(self) -> http.client.HTTPConnection:
        port = self.port()
        connection = getattr(self._local, "connection", None)
        if connection is None or self._local.port != port:
            if connection is not None:
                connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            self._local.connection, self._local.port = connection, port
        return connection

    def _drop(self, move_on: bool = False) -> None:
        if move_on and hasattr(self._local, "choice"):
            self._local.choice += 1
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local.connection = None

    def send(self, command: SourceCommand, key: str, stop: threading.Event, on_accepted=None) -> bool:
        """Sends until accepted (True) or ``stop`` is set (False)."""
        backoff = 0.05
        while not stop.is_set():
            try:
                connection = self._connection()
                connection.request("PUT", f"/{FUNCTION}/{command.target}", body=command.body(),
                                   headers={"Content-Type": f"application/vnd.{COMMANDS_TYPENAME}",
                                            "Idempotency-Key": key})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                self._drop(move_on=True)
                status = None
            if status == 202:
                if on_accepted:
                    on_accepted(command)
                return True
            self.counts["retries"] += 1
            self.counts[f"status {status}" if status else "connection errors"] += 1
            if status is not None and status >= 500:
                self._drop(move_on=True)
            if status is not None and status < 500:
                raise RuntimeError(f"ingress answered {status} to message {key}; the harness or the module is wrong")
            stop.wait(backoff)
            backoff = min(backoff * 2, 1.0)
        return False

    def close(self) -> None:
        self._drop()


class KafkaIngress:
    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.counts: Counter = Counter()
        self.failure: str | None = None
        # delivery failures must not happen (a failed delivery may still have been written, so it could be
        # neither counted nor not): retry for as long as a run may take
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "message.timeout.ms": 900_000, "linger.ms": 5})

    def send(self, command: SourceCommand, on_accepted) -> None:
        def delivered(error, _record):
            if error is None:
                self.counts["delivered"] += 1
                on_accepted(command)
            else:
                self.failure = self.failure or f"Kafka delivery of message {command.index} failed: {error}"
        while True:
            try:
                self.producer.produce(self.topic, command.body(), str(command.target).encode(), on_delivery=delivered)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def poll(self) -> None:
        self.producer.poll(0)

    def flush(self, timeout: float) -> int:
        return self.producer.flush(timeout)

    def close(self) -> None:
        """Flushes what it can and lets the client go (before the run's brokers stop, so it does not log
        connection errors for as long as the process lives)."""
        self.producer.flush(5)
        self.producer = None


def paced(rate: float) -> typing.Callable[[], None]:
    """A function that sleeps so that its calls come at most ``rate`` per second (0: no limit)."""
    if rate <= 0:
        return lambda: None
    started, count = time.monotonic(), [0]
    lock = threading.Lock()

    def wait() -> None:
        with lock:
            count[0] += 1
            due = started + count[0] / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return wait
