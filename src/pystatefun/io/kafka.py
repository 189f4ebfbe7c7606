"""Kafka ingress and egress (spec §3.4), exactly-once on the embedded backend.

**Ingress.** One consumer per ``io.statefun.kafka.v1/ingress``, polled in a thread of its own (the client
blocks). Each record becomes one message per target function type at the id = record key (spec §3.3).
The position after a record goes into the same epoch as its messages (``Epoch.source_offsets``), so
the data dir, not the consumer group, says where reading continues: a restart reads a record again
exactly when its messages were not committed. The group's offsets are committed as well, after each
epoch, for lag monitoring and for ``group-offsets`` startup of a new data dir. A record that cannot
become a message (no key, a key that is not UTF-8, a topic with no routing) follows ``badRecords``.

**Egress.** ``io.statefun.kafka.v1/egress`` records commit with their epoch into the data dir, then a
forwarder sends them to Kafka and forgets them:

* ``exactly-once``: each batch is one Kafka transaction, whose transactional id belongs to the data dir;
  the same transaction commits the last forwarded record's sequence number as the offset of a consumer
  group of its own on the ``pystatefun.egress-progress`` topic. After a crash anywhere between the
  SQLite commit and the Kafka commit, a restart fences the old transaction, reads that offset and
  forwards exactly the records after it: ``read_committed`` readers see each record once.
* ``at-least-once``: an idempotent producer; a batch is forgotten once Kafka acknowledged all of it (a
  crash in between sends it again).
* ``none``: a batch is forgotten once handed to the client.

Records wait in the data dir while Kafka is unreachable: nothing is lost, and functions go on.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import time
import typing

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_STORED,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from google.protobuf.message import DecodeError

from pystatefun.config.model import KafkaEgress as KafkaEgressSpec
from pystatefun.config.model import KafkaIngress as KafkaIngressSpec
from pystatefun.event_loop import prompt_handover
from pystatefun.io.playground import EGRESS_RECORD_TYPENAME, decode_egress_record
from pystatefun.runtime.envelope import address
from pystatefun.runtime.epoch import EgressRecord, Epoch
from pystatefun.runtime.processor import Runtime
from pystatefun.runtime.waiting import wait_for_event
from pystatefun.sdk.egress import KAFKA_PRODUCER_RECORD_TYPENAME
from pystatefun.sdk.messages import typed_value
from pystatefun.wire.kafka_egress_pb2 import KafkaProducerRecord
from pystatefun.wire.request_reply_pb2 import TypedValue

log = logging.getLogger("pystatefun.kafka")

PROGRESS_TOPIC = "pystatefun.egress-progress"
POLL_SECONDS = 0.05  # how long one poll of the consumer thread waits for records
# Records taken from a consumer at once. Large, because the runtime runs what one poll brought before
# it polls again: at full load the messages of one address then share an invocation (and its state
# read, storage, effects and write), and the loop crosses to the consumer thread less often. 4,000
# instead of 500 took a worker of bench/kafka_backend.py (1,000 keys) from 15-18k to 22-34k records/s.
# A poll never waits to fill up, so at a low rate it changes nothing.
MAX_POLL_RECORDS = 4000
FORWARD_BATCH = 1000  # egress records per Kafka transaction (or acknowledged batch)
RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
LAG_TIMEOUT_SECONDS = 10  # asking the brokers where the ingress's partitions end  # backoff of a forwarder while Kafka refuses or is away


def consume_batch(consumer: Consumer, max_records: int, timeout: float) -> list[Message]:
    """Up to ``max_records`` records of ``consumer`` as soon as there is one, waiting at most ``timeout``
    for the first. ``Consumer.consume`` alone returns only once it has ``max_records`` or the timeout
    passed, which at a low rate holds every record for the whole timeout."""
    if timeout <= 0:
        return consumer.consume(max_records, 0)
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(max_records - 1, 0)]


class SourceOffsets(typing.Protocol):
    instance: str

    def source_offsets(self, source: str) -> dict[tuple[str, int], int]: ...


class ForwardedEgress(typing.Protocol):
    instance: str

    def egress_batch(self, egress_id: str, limit: int) -> list[tuple[int, bytes]]: ...

    def drop_egress(self, egress_id: str, up_to_seq: int) -> None: ...


def _admin(bootstrap: str, properties: typing.Mapping[str, str]) -> AdminClient:
    return AdminClient({**properties, "bootstrap.servers": bootstrap})


# -- ingress ------------------------------------------------------------------------------------------


class KafkaIngress:
    """Reads the topics of one Kafka ingress into the runtime (see the module docstring)."""

    def __init__(self, spec: KafkaIngressSpec, runtime: Runtime, store: SourceOffsets):
        self.spec = spec
        self.runtime = runtime
        self.store = store
        self.routes = {routing.source: routing for routing in spec.topics}
        self.records = 0  # records read and routed
        # their messages for addresses of another partition than the record's (Kafka backend): one more
        # transaction, through <app>.messages; many of them mean the topic is not partitioned like the application
        self.elsewhere = 0
        self.bad_records: collections.Counter[str] = collections.Counter()  # by what was done: skip, dead-letter, fail
        self.stopped: dict[tuple[str, int], str] = {}  # partitions stopped by a bad record (policy fail): why
        self.stopped_at: dict[tuple[str, int], int] = {}  # and the offset of that record
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"kafka-ingress-{spec.id}")
        self._consumer: Consumer | None = None
        self._dead_letters: Producer | None = None
        self._task: asyncio.Task | None = None
        self._hooked: Epoch | None = None  # the epoch whose commit will also commit the group's offsets
        self._owns_consumer = True
        self._offsets: AdminClient | None = None  # asks the brokers where the partitions end (see lag)

    def attach(self, consumer: Consumer, thread: concurrent.futures.ThreadPoolExecutor) -> None:
        """Reads through another consumer (a Kafka backend worker's, whose transactions commit the
        positions) instead of a consumer of its own: the worker hands records to ``take``."""
        self._consumer, self._thread, self._owns_consumer = consumer, thread, False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._consumer = await loop.run_in_executor(self._thread, self._subscribe)
        self._task = loop.create_task(self._read_loop(), name=f"kafka-ingress-{self.spec.id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None and self._owns_consumer:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._consumer.close)
        if self._dead_letters is not None:
            self._dead_letters.flush(10)
        if self._owns_consumer:
            self._thread.shutdown()

    def status(self) -> dict[str, typing.Any]:
        """For /health."""
        return {
            "records": self.records,
            "messages_elsewhere": self.elsewhere,
            "bad_records": dict(self.bad_records),
            "stopped_partitions": {f"{topic}/{partition}": why for (topic, partition), why in self.stopped.items()},
        }

    async def lag(self) -> list[dict[str, typing.Any]]:
        """For the admin API's overview: per topic partition this ingress reads now, the committed records
        after its position (one it has read nothing of yet has no position, and is left out), or for a
        partition stopped at a bad record, from that record on. The ends are asked of the brokers, not
        taken from the consumer's last fetch: a stopped partition fetches nothing, and its lag is what
        matters then. [] when the brokers do not answer."""
        if self._consumer is None:
            return []
        positions = await asyncio.get_running_loop().run_in_executor(self._thread, self._positions)
        if not positions:
            return []
        if self._offsets is None:
            self._offsets = _admin(self.spec.address, self.spec.properties)
        ends = self._offsets.list_offsets({TopicPartition(topic, partition): OffsetSpec.latest() for topic, partition in positions},
                                          isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=LAG_TIMEOUT_SECONDS)
        lag = []
        try:
            for tp, future in ends.items():
                end = (await asyncio.wrap_future(future)).offset
                lag.append({"ingress": self.spec.id, "topic": tp.topic, "partition": tp.partition,
                            "lag": max(0, end - positions[(tp.topic, tp.partition)])})
        except KafkaException as e:
            log.warning("kafka ingress %s: the brokers did not say where its partitions end: %s", self.spec.id, e)
            return []
        return lag

    # -- the consumer thread ----------------------------------------------------------------------------

    def _positions(self) -> dict[tuple[str, int], int]:
        """The next offset to route of each partition read now that has one (the consumer's position is past
        the records it fetched after a bad record stopped their partition)."""
        consumer = self._consumer
        positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(consumer.assignment())}
        return {key: self.stopped_at.get(key, offset) for key, offset in positions.items()
                if offset >= 0 or key in self.stopped_at}

    def _subscribe(self) -> Consumer:
        config = {
            **self.spec.properties,
            "bootstrap.servers": self.spec.address,
            "group.id": self.spec.consumer_group_id,
            "auto.offset.reset": self.spec.auto_offset_reset_position,
            # positions commit with the epochs (the data dir); the group's are committed after them
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            # static membership: a restart after kill -9 takes its partitions back at once, instead of
            # waiting for the group to give up on the member that died (session.timeout.ms)
            "group.instance.id": f"pystatefun-{self.store.instance}-{self.spec.id}",
        }
        consumer = Consumer(config)
        consumer.subscribe(list(self.routes), on_assign=self._on_assign, on_revoke=self._on_revoke)
        return consumer

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = self.store.source_offsets(self.spec.id)
        for tp in partitions:
            offset = committed.get((tp.topic, tp.partition))
            tp.offset = offset if offset is not None else self.startup_offset(consumer, tp)
        consumer.assign(partitions)
        log.info("kafka ingress %s reads %s", self.spec.id,
                 ", ".join(f"{tp.topic}/{tp.partition}@{_offset_name(tp.offset)}" for tp in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.stopped.pop((tp.topic, tp.partition), None)
            self.stopped_at.pop((tp.topic, tp.partition), None)

    def startup_offset(self, consumer: Consumer, tp: TopicPartition) -> int:
        """Where a partition starts when the data dir has no position for it (spec §3.4)."""
        startup = self.spec.startup_position
        reset = OFFSET_BEGINNING if self.spec.auto_offset_reset_position == "earliest" else OFFSET_END
        if startup.type == "group-offsets":
            return OFFSET_STORED  # the group's committed offset, else auto.offset.reset
        if startup.type == "earliest":
            return OFFSET_BEGINNING
        if startup.type == "latest":
            return OFFSET_END
        if startup.type == "specific-offsets":
            return (startup.offsets or {}).get((tp.topic, tp.partition), reset)
        # date: the first record at or after it
        at = TopicPartition(tp.topic, tp.partition, int(startup.date.timestamp() * 1000))
        (found,) = consumer.offsets_for_times([at], timeout=30)
        return found.offset if found.offset >= 0 else reset

    def _poll(self) -> list[Message]:
        return consume_batch(self._consumer, MAX_POLL_RECORDS, POLL_SECONDS)

    # -- the event loop ---------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            records = await loop.run_in_executor(self._thread, self._poll)
            for record in records:
                await self.take(record)

    async def take(self, record: Message) -> None:
        """One record of this ingress's topics: its messages go into the open epoch with its position."""
        error = record.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            log.warning("kafka ingress %s: %s", self.spec.id, error.str())
            return
        topic, partition, offset = record.topic(), record.partition(), record.offset()
        if (topic, partition) in self.stopped:
            return  # fetched before its partition stopped
        route = self.routes.get(topic)
        key = record.key()
        problem = None
        if route is None:
            problem = f"topic {topic!r} has no routing in this ingress"
        elif key is None:
            problem = "the record has no key, and the key is the address id of its message"
        else:
            try:
                id = key.decode("utf-8")
            except UnicodeDecodeError:
                problem = "the record key is not UTF-8 text, and the key is the address id of its message"
        if problem is not None:
            await self._bad(record, problem)
            return
        runtime = self.runtime
        targets = [address(target, id) for target in route.targets]
        for target in targets:  # back-pressure first: all of a record's messages go into one epoch
            if not runtime.has_room(target):
                await runtime.admit(target)
        value = typed_value(route.value_type, record.value() or b"")
        # on the Kafka backend partition i of the topic is read with partition i mod N (worker.py); messages
        # for other partitions go through the log even to a partition this worker runs (runtime.route)
        source_partition = None if self._owns_consumer else partition % runtime.partitions
        trace = None
        if runtime.tracing is not None:
            trace = runtime.tracing.kafka_ingress(self.spec.id, topic, partition, offset, record.headers(), targets)
        self.elsewhere += runtime.route_record(self.spec.id, targets, value, trace, source_partition)
        self.records += 1
        self._advance(topic, partition, offset)

    async def _bad(self, record: Message, problem: str) -> None:
        policy = self.spec.bad_records
        where = f"{record.topic()}/{record.partition()}@{record.offset()}"
        if policy.type == "fail":
            self.stopped[(record.topic(), record.partition())] = f"{where}: {problem}"
            self.stopped_at[(record.topic(), record.partition())] = record.offset()
            self.bad_records["fail"] += 1
            log.error("kafka ingress %s stopped reading %s/%d at offset %d: %s (badRecords: fail; use skip or "
                      "dead-letter-topic to go past such records)",
                      self.spec.id, record.topic(), record.partition(), record.offset(), problem)
            tp = TopicPartition(record.topic(), record.partition())
            await asyncio.get_running_loop().run_in_executor(self._thread, self._consumer.pause, [tp])
            return
        if policy.type == "dead-letter-topic":
            await asyncio.get_running_loop().run_in_executor(self._thread, self._dead_letter, record, problem)
            self.bad_records["dead-letter"] += 1
        else:
            self.bad_records["skip"] += 1
            log.warning("kafka ingress %s skipped %s: %s", self.spec.id, where, problem)
        self._advance(record.topic(), record.partition(), record.offset())

    def _dead_letter(self, record: Message, problem: str) -> None:
        """Copies a bad record to the dead-letter topic and waits for Kafka's acknowledgement (at least
        once: a crash before the epoch commits copies it again)."""
        if self._dead_letters is None:
            self._dead_letters = Producer({**self.spec.properties, "bootstrap.servers": self.spec.address,
                                           "enable.idempotence": True})
        failures: list[KafkaError] = []
        headers = [("pystatefun.reason", problem.encode()), ("pystatefun.source",
                   f"{record.topic()}/{record.partition()}@{record.offset()}".encode())]
        while True:
            self._dead_letters.produce(self.spec.bad_records.topic, record.value(), record.key(), headers=headers,
                                       on_delivery=lambda error, _: error is not None and failures.append(error))
            self._dead_letters.flush()
            if not failures:
                return
            log.error("kafka ingress %s: dead-letter topic %s refused a record (%s); retrying",
                      self.spec.id, self.spec.bad_records.topic, failures[-1].str())
            failures.clear()
            time.sleep(1)

    def _advance(self, topic: str, partition: int, offset: int) -> None:
        epoch = self.runtime.epoch
        epoch.source_offsets[(self.spec.id, topic, partition)] = offset + 1
        if self._owns_consumer and self._hooked is not epoch:
            self._hooked = epoch
            epoch.done.add_done_callback(lambda _, e=epoch: self._committed(e))

    def _committed(self, epoch: Epoch) -> None:
        """After the epoch: the group's offsets follow (asynchronously; they are informational)."""
        offsets = [TopicPartition(topic, partition, offset)
                   for (source, topic, partition), offset in epoch.source_offsets.items() if source == self.spec.id]
        if offsets and self._consumer is not None:
            self._thread.submit(self._commit_group_offsets, offsets)

    def _commit_group_offsets(self, offsets: list[TopicPartition]) -> None:
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as e:  # e.g. the partitions were revoked meanwhile
            log.info("kafka ingress %s: group offsets not committed: %s", self.spec.id, e)


def _offset_name(offset: int) -> str:
    return {OFFSET_BEGINNING: "earliest", OFFSET_END: "latest", OFFSET_STORED: "group-offset"}.get(offset, str(offset))


# -- egress -------------------------------------------------------------------------------------------


class KafkaEgress:
    """Accepts KafkaProducerRecord values into the epochs and forwards committed ones (module docstring)."""

    def __init__(self, spec: KafkaEgressSpec, store: ForwardedEgress):
        self.spec = spec
        self.id = spec.id
        self.store = store
        self.semantic = spec.delivery_semantic.type
        # the data dir's own names in Kafka: a restart of the same data dir fences its earlier producer
        self.transactional_id = f"pystatefun-{store.instance}-{spec.id}"
        self.forwarded = 0  # records delivered to Kafka by this process
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"kafka-egress-{spec.id}")
        self._producer: Producer | None = None
        self._progress: Consumer | None = None  # the group whose offset is the last forwarded seq
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    # -- the runtime side -------------------------------------------------------------------------------

    def record(self, egress_typename: str, value: TypedValue) -> EgressRecord:
        if value.typename == EGRESS_RECORD_TYPENAME:
            # a playground record ({topic, payload}): functions written for the playground egress write to
            # Kafka unchanged when the module gives a Kafka egress the playground egress's id
            topic, data = decode_egress_record(value)
            record = KafkaProducerRecord(topic=topic, value_bytes=data)
            return EgressRecord(self.id, topic, record.SerializeToString(), kafka=record)
        if value.typename != KAFKA_PRODUCER_RECORD_TYPENAME:
            raise ValueError(f"the Kafka egress {self.id} takes {KAFKA_PRODUCER_RECORD_TYPENAME} values "
                             f"(kafka_egress_message(...) in the SDKs) or {EGRESS_RECORD_TYPENAME} values (JSON "
                             f"{{'topic', 'payload'}}), got {value.typename!r}")
        try:
            record = KafkaProducerRecord.FromString(value.value)
        except DecodeError as e:
            raise ValueError(f"not a KafkaProducerRecord: {e}") from None
        if not record.topic:
            raise ValueError("a KafkaProducerRecord needs a topic")
        return EgressRecord(self.id, record.topic, value.value, kafka=record)

    def committed(self, epoch: Epoch) -> None:
        self._changed.set()

    def status(self) -> dict[str, typing.Any]:
        """For /health."""
        return {"delivery_semantic": self.semantic, "forwarded": self.forwarded}

    # -- forwarding ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts forwarding; it connects in the background, so the runtime runs while Kafka is away."""
        self._changed.set()  # records committed before a restart go first
        self._task = asyncio.get_running_loop().create_task(self._forward_loop(), name=f"kafka-egress-{self.id}")

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Forwards what is committed (for up to ``drain_seconds``), then closes the producer."""
        if self._task is not None:
            self._changed.set()
            try:
                if self._producer is not None:
                    await asyncio.wait_for(self._drained(), drain_seconds)
            except TimeoutError:
                log.warning("kafka egress %s: records still waiting in the data dir; they go after a restart", self.id)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown()

    async def _drained(self) -> None:
        while self.store.egress_batch(self.id, 1):
            await asyncio.sleep(0.02)

    def _connect(self) -> None:
        """Makes the producer; for exactly-once, fences the data dir's earlier producer (aborting its open
        transaction) and forgets the records that its committed transactions delivered."""
        config = {**self.spec.properties, "bootstrap.servers": self.spec.address}
        if self.semantic == "exactly-once":
            _ensure_topic(self.spec.address, self.spec.properties, PROGRESS_TOPIC)
            timeout_ms = int(self.spec.delivery_semantic.transaction_timeout.total_seconds() * 1000)
            producer = Producer({**config, "transactional.id": self.transactional_id, "transaction.timeout.ms": timeout_ms})
            producer.init_transactions(60)
            if self._progress is None:
                self._progress = Consumer({**config, "group.id": self.transactional_id, "enable.auto.commit": False})
            self._forget_delivered()
        elif self.semantic == "at-least-once":
            producer = Producer({**config, "enable.idempotence": True})
        else:
            producer = Producer({**config, "acks": "0"})
        self._producer = producer

    def _forget_delivered(self) -> None:
        """Drops the records that committed transactions delivered, by the progress group's offset."""
        (marker,) = self._progress.committed([TopicPartition(PROGRESS_TOPIC, 0)], timeout=30)
        if marker.offset > 0:
            self.store.drop_egress(self.id, marker.offset - 1)

    def _close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
        if self._progress is not None:
            # a batch whose transaction committed after stop() cancelled the forward loop (it runs on in
            # this thread) is forgotten now, so that the data dir holds exactly the undelivered records:
            # a savepoint taken after a stop must not hold a record that Kafka has already
            with contextlib.suppress(KafkaException):  # Kafka away: the next start forgets them instead
                self._forget_delivered()
            self._progress.close()

    async def _forward_loop(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0

        async def backoff(what: str, error: KafkaException) -> None:
            nonlocal failures
            delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
            failures += 1
            log.warning("kafka egress %s: %s (%s); retrying in %.1f s", self.id, what,
                        error.args[0].str() if error.args else error, delay)
            await asyncio.sleep(delay)

        while self._producer is None:
            try:
                await loop.run_in_executor(self._thread, self._connect)
            except KafkaException as e:
                await backoff(f"cannot connect to {self.spec.address}", e)
        failures = 0
        while True:
            await wait_for_event(self._changed, None)
            self._changed.clear()
            while rows := self.store.egress_batch(self.id, FORWARD_BATCH):
                try:
                    await loop.run_in_executor(self._thread, self._deliver, rows)
                except KafkaException as e:
                    await backoff(f"{len(rows)} records not delivered yet", e)
                    continue
                failures = 0
                self.store.drop_egress(self.id, rows[-1][0])
                self.forwarded += len(rows)

    def _deliver(self, rows: list[tuple[int, bytes]]) -> None:
        """Sends one batch by the egress's delivery semantic; returns once it may be forgotten."""
        producer = self._producer
        failures: list[KafkaError] = []

        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                failures.append(error)

        if self.semantic == "exactly-once":
            producer.begin_transaction()
            try:
                self._produce(rows, None)
                marker = [TopicPartition(PROGRESS_TOPIC, 0, rows[-1][0] + 1)]
                producer.send_offsets_to_transaction(marker, self._progress.consumer_group_metadata())
            except KafkaException as e:
                self._recover_transaction(e)
                raise
            while True:
                try:
                    producer.commit_transaction()
                    return
                except KafkaException as e:
                    if not e.args[0].retriable():
                        self._recover_transaction(e)
                        raise
        elif self.semantic == "at-least-once":
            self._produce(rows, delivered)
            with prompt_handover():  # a delivery report per record (see prompt_handover)
                producer.flush()
            if failures:
                raise KafkaException(failures[0])
        else:
            self._produce(rows, None)
            producer.poll(0)

    def _recover_transaction(self, error: KafkaException) -> None:
        """After a failed transaction: abort it, or when the producer cannot (fenced, fatal), make a new
        one, which aborts it and forgets what the marker says was delivered."""
        if error.args[0].txn_requires_abort():
            self._producer.abort_transaction()
        else:
            self._connect()

    def _produce(self, rows: list[tuple[int, bytes]], on_delivery: typing.Callable | None) -> None:
        for _, payload in rows:
            record = KafkaProducerRecord.FromString(payload)
            key = record.key.encode("utf-8") if record.key else None  # spec §3.4: an empty key is no key
            while True:
                try:
                    self._producer.produce(record.topic, record.value_bytes, key, on_delivery=on_delivery)
                    break
                except BufferError:  # the client's queue is full: let it send
                    self._producer.poll(0.1)


def _ensure_topic(bootstrap: str, properties: typing.Mapping[str, str], topic: str) -> None:
    """Creates ``topic`` (one partition, the broker's replication) unless it exists."""
    admin = _admin(bootstrap, properties)
    if topic in admin.list_topics(timeout=30).topics:
        return
    (future,) = admin.create_topics([NewTopic(topic, 1)]).values()
    try:
        future.result(30)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
