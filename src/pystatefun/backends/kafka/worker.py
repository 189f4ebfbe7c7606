"""One worker process of an application on the Kafka backend.

The worker joins the application's consumer group (group id = the app name) with a consumer of
``<app>.messages``. When the group assigns a partition of ``<app>.messages``, the worker first restores
that partition's changelog (a progress line in the log), then runs it; when one is taken away it lets
the batches in flight finish and commits the epoch before letting go (``Runtime.release``). What the
previous owner had not processed is in the partition's log, and comes first: until the log is read up
to where it ended at the assignment, the partition's sources are not read and the runtime holds what
this worker sends to it (``_own``, ``_caught_up``).

Kafka ingresses are co-partitioned with ``<app>.messages``: partition i of an ingress topic is read by
the owner of partition i mod N of ``<app>.messages`` (N partitions), assigned and taken away with it.
A record whose key's partition is the same in both (a topic with N partitions, filled by a producer
that partitions by the CRC32 of the key, as librdkafka-based clients do by default) is processed where
it is read, in one transaction; others go through ``<app>.messages`` to their owner, one more
transaction. The ingress's group (``consumerGroupId``) keeps its positions, committed with the epochs;
the worker is not a member of it, the messages group's offsets in the same transaction fence a worker
that lost its partitions.

Kinesis ingresses and egresses go with the partitions too (backends/kafka/kinesis.py): a stream is read
by the owner of its partition, and the Kinesis egress records of a partition are put by its owner.

Records are handed from the consumer thread to the event loop a batch at a time; rebalance callbacks
run in the consumer thread while the loop waits for that batch, so they can call into the loop without
racing the routing of records.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import time
import typing

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from pystatefun.backends.kafka.cluster import GroupView, WorkerUrls, client_id
from pystatefun.backends.kafka.forwarding import Forwarding
from pystatefun.backends.kafka.reading import PartitionReader
from pystatefun.backends.kafka.records import PartitionState, decode_message
from pystatefun.backends.kafka.store import KafkaStore, fence
from pystatefun.backends.kafka.topics import Topics, prepare_topics
from pystatefun.config import Module, PlaygroundIngress as PlaygroundIngressSpec
from pystatefun.io.kafka import MAX_POLL_RECORDS, KafkaIngress, consume_batch
from pystatefun.runtime.processor import Runtime

if typing.TYPE_CHECKING:  # botocore, an extra, is loaded only for a module with Kinesis components
    from pystatefun.backends.kafka.kinesis import KinesisForwarder, KinesisStreams
    from pystatefun.io.kinesis.egress import KinesisEgress
    from pystatefun.io.kinesis.ingress import KinesisIngress

log = logging.getLogger("pystatefun.kafka")

POLL_SECONDS = 0.05
INGRESS_TURN_SECONDS = 0.005
BUSY_BATCH = 50  # records in one poll that make the read loop's turns stop waiting (see _read_loop)
# a worker that dies is noticed within SESSION_TIMEOUT_MS; its open transaction cannot outlive
# TRANSACTION_TIMEOUT_MS, after which read_committed readers go past it
SESSION_TIMEOUT_MS = 6_000  # the brokers' default minimum
# how soon a member hears that a rebalance began (the client's default, 3 s, is half the recovery time)
HEARTBEAT_INTERVAL_MS = 1_000
TRANSACTION_TIMEOUT_MS = 10_000
# How long an assignment may take to get what it needs from the brokers before the worker fails (a restart
# clears it). It waits out what passes by itself: a new topic's partition leaders being elected, a broker
# restarting, and committed offsets held back by an open transaction with offsets of the partitions,
# which for a worker that died lasts until the broker aborts it (TRANSACTION_TIMEOUT_MS, checked every
# transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by default).
ASSIGN_TIMEOUT_SECONDS = 60
TRANSIENT_ERRORS = frozenset({KafkaError._TIMED_OUT, KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TRANSPORT, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                              KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR})
ASK_AGAIN_SECONDS = 0.5
# how long a committed-offsets lookup or a restore is held back before the workers that left the group are
# fenced (see _committed)
COMMITTED_WAIT_SECONDS = 1
STOP_TIMEOUT_SECONDS = 45
GROUPS_NOTED_EVERY_SECONDS = 0.05  # while a rebalance callback waits for the loop (see _in_loop)
WATERMARKS_EVERY_SECONDS = 1.0  # how fresh the partition lag in the metrics is


def default_worker_id(index: int = 0) -> str:
    """Stable across restarts on one machine, so a restarted worker fences its earlier self at once."""
    return f"{socket.gethostname()}-{index}"


def worker_urls(module: Module, advertise_host: str | None, port_offset: int, admin_host: str,
                admin_port: int) -> WorkerUrls:
    """Where a worker serves the module's HTTP ingress and its admin API (``admin_port`` 0: none), as the
    other workers reach it."""
    def url(listen_host: str, port: int) -> str:
        host = advertise_host or (socket.gethostname() if listen_host in ("0.0.0.0", "::", "") else listen_host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    ingresses = [spec for spec in module.ingresses if isinstance(spec, PlaygroundIngressSpec)]
    return WorkerUrls(ingress=url(ingresses[0].host, ingresses[0].port + port_offset) if ingresses else None,
                      admin=url(admin_host, admin_port) if admin_port else None)


T = typing.TypeVar("T")


def retrying(what: str, deadline: float, call: typing.Callable[[], T]) -> T:
    """``call()``, asked again while it fails with an error that passes by itself (TRANSIENT_ERRORS), until
    ``deadline`` (time.monotonic()); a line in the log each time."""
    while True:
        try:
            return call()
        except KafkaException as e:
            if e.args[0].code() not in TRANSIENT_ERRORS or time.monotonic() >= deadline:
                raise
            log.info("%s: %s; asking again", what, e.args[0].str())
            time.sleep(ASK_AGAIN_SECONDS)


class KafkaBackend:
    """Partition ownership, restore and the log of one worker (see the module docstring)."""

    def __init__(self, bootstrap_servers: str, app: str, worker_id: str, partitions: int | None = None,
                 properties: typing.Mapping[str, str] | None = None, urls: WorkerUrls = WorkerUrls(None, None)):
        """``urls``: where this worker serves its HTTP ingress and admin API, for the other workers."""
        self.bootstrap_servers = bootstrap_servers
        self.app = app
        self.worker_id = worker_id
        self.urls = urls
        self.properties = dict(properties or {})
        common = {**self.properties, "bootstrap.servers": bootstrap_servers}
        self._common = common
        admin = AdminClient(common)
        self._admin = admin
        self.topics: Topics = prepare_topics(admin, app, partitions)
        self.partitions = self.topics.partitions
        # the other workers find this one's URLs, with the partitions it owns, in the group (cluster.py)
        self.consumer = self._consumer(app, {"client.id": client_id(worker_id, urls)})
        self.view = GroupView(admin, app, self.topics.messages)
        self.store = KafkaStore(self.topics, common, {
            "transactional.id": self._instance(worker_id),
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            "linger.ms": 2,
        })
        self.runtime: Runtime | None = None
        self.ingresses: list[tuple[KafkaIngress, Consumer]] = []
        self.kinesis: KinesisStreams | None = None  # when the module has Kinesis ingresses
        self.kinesis_forwarder: KinesisForwarder | None = None  # when it has Kinesis egresses
        self._seen_workers: set[str] = set()  # ids of the workers seen in the group (see _fence_departed)
        self._fenced: set[str] = set()
        # ingress id -> its topics' partition counts (see _ingress_partitions)
        self._ingress_topics: dict[str, dict[str, int]] = {}
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kafka-worker")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self.rebalances = 0
        self._closing = False  # set once the partitions are handed over on the way out (see _leave)
        self.restoring: dict[int, int] = {}  # partition -> changelog records still to read
        # partitions assigned whose log is not read yet up to where it ended then (see _own): partition ->
        # (the offset its reading began at, that end, its restored state); in the consumer thread
        self._catching_up: dict[int, tuple[int, int, PartitionState]] = {}
        self._high_watermarks: dict[int, int] = {}  # partition -> offset after its last message (see _consume)
        self._watermarks_at = float("-inf")

    def _instance(self, worker_id: str) -> str:
        """What the producers of a worker of this application are named after (store.transactional_ids)."""
        return f"pystatefun-{self.app}-{worker_id}"

    def _consumer(self, group: str, settings: typing.Mapping[str, str] | None = None) -> Consumer:
        # Not a static member (group.instance.id): a static member does not leave the group when it
        # closes, so a worker stopped on purpose would keep its partitions until the session timeout.
        return Consumer({
            **self._common,
            **(settings or {}),
            "group.id": group,
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        })

    def forwarding(self, runtime: Runtime) -> Forwarding:
        """What hands the requests that only another worker can answer to that worker."""
        return Forwarding(runtime, self.view, self.worker_id)

    def attach(self, runtime: Runtime, ingresses: typing.Iterable[KafkaIngress],
               kinesis_ingresses: typing.Sequence[KinesisIngress] = (),
               kinesis_egresses: typing.Sequence[KinesisEgress] = ()) -> None:
        self.runtime = runtime
        if kinesis_ingresses or kinesis_egresses:
            from pystatefun.backends.kafka.kinesis import KinesisForwarder, KinesisStreams

            if kinesis_ingresses:
                self.kinesis = KinesisStreams(kinesis_ingresses, runtime.partition_of)
            if kinesis_egresses:
                self.kinesis_forwarder = KinesisForwarder(self.topics, self._common, kinesis_egresses)
        ingresses = list(ingresses)
        existing = self._admin.list_topics(timeout=30).topics if ingresses else {}
        for ingress in ingresses:
            counts = {}
            for topic in ingress.routes:
                metadata = existing.get(topic)
                if metadata is None or metadata.error is not None or not metadata.partitions:
                    raise ValueError(f"Kafka ingress {ingress.spec.id}: topic {topic!r} does not exist on "
                                     f"{self.bootstrap_servers}; create it first (the Kafka backend reads its "
                                     f"partition i with partition i mod {self.partitions} of {self.topics.messages})")
                counts[topic] = len(metadata.partitions)
            self._ingress_topics[ingress.spec.id] = counts
            # reads by assignment, not as a member of the group: see the module docstring
            consumer = self._consumer(ingress.spec.consumer_group_id)
            ingress.attach(consumer, self._thread)
            self.ingresses.append((ingress, consumer))

    def _ingress_partitions(self, ingress: KafkaIngress, partitions: typing.Iterable[int]) -> list[TopicPartition]:
        """The partitions of ``ingress``'s topics that go with these partitions of ``<app>.messages``."""
        return [TopicPartition(topic, i) for p in partitions
                for topic, count in self._ingress_topics[ingress.spec.id].items() for i in range(p, count, self.partitions)]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

        def subscribe() -> None:
            self.consumer.subscribe([self.topics.messages], on_assign=self._guarded(self._on_assign),
                                    on_revoke=self._guarded(self._on_revoke), on_lost=self._on_lost)

        await self._loop.run_in_executor(self._thread, subscribe)
        self._task = self._loop.create_task(self._read_loop(), name="kafka-worker")
        self._task.add_done_callback(self._read_loop_done)

    async def stop(self) -> None:
        """Leaves the groups: the partitions are committed and handed over before it returns. When Kafka
        does not let that finish within STOP_TIMEOUT_SECONDS (a cluster gone away), the process ends as
        after a kill -9, which the transactions make safe, instead of hanging."""
        try:
            await asyncio.wait_for(self._leave(), STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            log.critical("worker %s could not hand its partitions over within %d s; exiting (the next owner "
                         "continues from the last commit)", self.worker_id, STOP_TIMEOUT_SECONDS)
            logging.shutdown()
            os._exit(75)

    async def _leave(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # commit and let go while still a settled member of the group; committing from inside close()
        # can meet a rebalance started by another worker leaving at the same time
        if self.runtime is not None and not self.runtime.failed.done():
            await self._release(list(self.runtime.processors))
        self._closing = True
        if self.kinesis_forwarder is not None:
            await self.kinesis_forwarder.close()
        loop = asyncio.get_running_loop()
        for _, consumer in self.ingresses:
            await loop.run_in_executor(self._thread, consumer.close)
        await loop.run_in_executor(self._thread, self.consumer.close)
        self._thread.shutdown()

    def lag(self) -> dict[int, int]:
        """Messages in the log after this worker's read position, per owned partition (from the
        watermarks the consumer thread noted last, at most WATERMARKS_EVERY_SECONDS ago)."""
        return {partition: max(0, self._high_watermarks[partition] - position)
                for partition, position in self.store.read_positions().items() if partition in self._high_watermarks}

    def _consume(self, wait: float) -> tuple[list[Message], list[PartitionState]]:
        """One batch of ``<app>.messages`` (in the consumer thread), and the partitions whose catching up
        it ends (see _caught_up). Notes the partitions' high watermarks now and then: only here, for a
        consumer may not be used from the event loop's thread (its calls block while a rebalance callback
        of the consumer thread waits for the loop)."""
        batch = self._poll(self.consumer, None, wait)
        if time.monotonic() - self._watermarks_at > WATERMARKS_EVERY_SECONDS:
            self._watermarks_at = time.monotonic()
            highs = {}
            for partition in self.store.read_positions():
                try:
                    _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topics.messages, partition), cached=True)
                except KafkaException:
                    continue
                if high >= 0:
                    highs[partition] = high
            self._high_watermarks = highs
        return batch, self._caught_up() if self._catching_up else []

    def _caught_up(self) -> list[PartitionState]:
        """The partitions whose log the consumer has now read up to where it ended when they were assigned
        (in the consumer thread). Their ingress partitions are assigned now, so that their records come
        after that log (they are polled after the batch is routed, and the read loop lets the runtime
        deliver what it held first: _read_loop)."""
        done = []
        for partition, (start, end, restored) in list(self._catching_up.items()):
            position = self.consumer.position([TopicPartition(self.topics.messages, partition)])[0].offset
            if max(position, start) >= end:  # the position moves past transaction markers too
                del self._catching_up[partition]
                done.append(restored)
                if end > start:
                    log.info("worker %s read the log of partition %d up to where it ended when assigned (%d "
                             "offsets); its sources are read from now on", self.worker_id, partition, end - start)
        if done:
            deadline = time.monotonic() + ASSIGN_TIMEOUT_SECONDS
            for ingress, ingress_consumer in self.ingresses:
                self._assign_ingress(ingress, ingress_consumer, [restored.partition for restored in done], deadline)
        return done

    def _poll(self, consumer: Consumer, source: str | None, wait: float) -> list[Message]:
        """A batch from ``consumer`` (in the consumer thread), noting its group metadata for the commits."""
        batch = consume_batch(consumer, MAX_POLL_RECORDS, wait)
        self.store.note_group(source, consumer.consumer_group_metadata())
        if batch:
            # The batch can hold records fetched before a revoke callback that this same call ran: they
            # belong to the partition's next owner, which reads them from the offsets that callback committed.
            assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            batch = [record for record in batch if record.error() is not None or (record.topic(), record.partition()) in assigned]
        return batch

    def _read_loop_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None and self.runtime.failed and not self.runtime.failed.done():
            self.runtime.failed.set_exception(task.exception())

    # -- records ------------------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        # The consumers take turns in one thread: a record waits for the other consumers' turns, so with
        # ingresses each turn is short (a turn ends as soon as its consumer has a record). While records
        # come in full batches, no turn waits at all: a turn waiting on an empty consumer would hold back
        # the records another one has. A trickle keeps the short waits: turns that never wait would spin,
        # and the CPU they take slows the commits down.
        idle_wait = INGRESS_TURN_SECONDS if self.ingresses else POLL_SECONDS
        busy = False
        while True:
            wait = 0 if busy else idle_wait
            batch, caught_up = await loop.run_in_executor(self._thread, self._consume, wait)
            busy = len(batch) >= BUSY_BATCH
            for record in batch:
                error = record.error()
                if error is None:
                    await self._message(record)
                elif error.fatal():
                    raise KafkaException(error)
                else:
                    log.warning("kafka worker %s: %s", self.worker_id, error.str())
            for restored in caught_up:
                self._read_sources(restored)
            for ingress, consumer in self.ingresses:
                records = await loop.run_in_executor(self._thread, self._poll, consumer, ingress.spec.id, wait)
                busy = busy or len(records) >= BUSY_BATCH
                for record in records:
                    await ingress.take(record)

    async def _message(self, record: Message) -> None:
        runtime = self.runtime
        seq = self.store.read(record.partition(), record.offset(), runtime.new_seq)
        if seq is None:
            return  # written by this worker and in memory already
        envelope = decode_message(record.value())
        envelope.seq = seq
        if not runtime.has_room(envelope.target):
            await runtime.admit(envelope.target)
        runtime.route(envelope)

    # -- rebalances (in the consumer thread) -------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.rebalances += 1
        # Workers that left since the last rebalance are fenced before anything is looked up: a dead one's
        # open transaction aborts now, instead of holding back the committed offsets and the changelog
        # until the lookup has waited a second for it (the way a worker not seen leaving is still found,
        # in _committed and _restore). Noting who is present here is also what tells the next one.
        self._fence_departed()
        if not partitions:
            return
        deadline = time.monotonic() + ASSIGN_TIMEOUT_SECONDS
        assigned = []
        for tp in self._committed(consumer, partitions, deadline):
            if tp.offset < 0:  # never committed: from the start of the log
                tp.offset = retrying("watermarks", deadline, lambda: consumer.get_watermark_offsets(tp, timeout=5))[0]
            offset = tp.offset
            restored = self._restore(tp.partition, deadline)
            self._in_loop(self._own(restored, offset))
            # where the log ends now that everything this worker sent to the partition is in it (_own)
            end = retrying("watermarks", deadline, lambda: consumer.get_watermark_offsets(tp, timeout=5, cached=False))[1]
            self._catching_up[tp.partition] = (offset, end, restored)
            assigned.append(TopicPartition(tp.topic, tp.partition, offset))
        consumer.incremental_assign(assigned)
        log.info("worker %s runs partitions %s", self.worker_id, sorted(tp.partition for tp in assigned))

    def _assign_ingress(self, ingress: KafkaIngress, consumer: Consumer, owned: list[int], deadline: float) -> None:
        """Starts reading the ingress partitions that go with newly owned partitions: from the group's
        position, else from the ingress's startup position."""
        partitions = self._ingress_partitions(ingress, owned)
        if not partitions:
            return
        committed = self._committed(consumer, partitions, deadline)
        starts = [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else
                                 retrying("startup offset", deadline, lambda: ingress.startup_offset(consumer, tp)))
                  for tp in committed]
        consumer.incremental_assign(starts)

    def _committed(self, consumer: Consumer, partitions: list[TopicPartition], deadline: float) -> list[TopicPartition]:
        """The group's committed offsets of ``partitions``. A transaction still open with offsets of them
        holds the answer back: one of a worker that died (kill -9) or was cut off lasts until the
        transaction timeout, so the workers that left the group are fenced first."""
        def ask() -> list[TopicPartition]:
            try:
                return consumer.committed(partitions, timeout=COMMITTED_WAIT_SECONDS)
            except KafkaException as e:
                if e.args[0].code() == KafkaError._TIMED_OUT:
                    self._fence_departed()
                raise
        try:
            return retrying("committed offsets", deadline, ask)
        except KafkaException as e:
            if e.args[0].code() != KafkaError._TIMED_OUT:
                raise
            # Fencing ends every transaction of a pystatefun worker, so what is left is the brokers not
            # answering, another producer's transaction, or one the broker lost track of (a "hanging"
            # transaction: its offsets stay pending after the transaction ended): say how to tell them apart.
            where = ", ".join(f"{tp.topic}/{tp.partition}" for tp in partitions)
            raise RuntimeError(
                f"the committed offsets of {where} were still held back after {ASSIGN_TIMEOUT_SECONDS} s. "
                "Either the brokers do not answer, or a transaction that is not this application's, or one "
                "the broker no longer tracks, still holds offsets of these partitions. Look for it with "
                "kafka-transactions.sh --bootstrap-server ... describe-producers --topic __consumer_offsets "
                "--partition N (an open one shows a CurrentTransactionStartOffset) or find-hanging --broker-id "
                "N, and end it with kafka-transactions.sh abort; docs/kafka.md, 'Failures', has the details"
            ) from None

    def _fence_departed(self) -> None:
        """Fences the workers seen in the group before and not in it now (each once while it is away).
        Fencing only shortens a wait, so a failure here is logged and the wait goes on."""
        present = self._present_workers()
        try:
            for worker_id in sorted(self._seen_workers - present - self._fenced - {self.worker_id}):
                log.info("worker %s fences worker %s, which left the group: its open transaction aborts now",
                         self.worker_id, worker_id)
                fence(self._common, self._instance(worker_id))
                self._fenced.add(worker_id)
        except KafkaException as e:
            log.warning("worker %s could not fence the workers that left: %s", self.worker_id, e.args[0].str())
        self._fenced -= present  # one that came back is fenced again if it leaves again

    def _present_workers(self) -> set[str]:
        """The ids of the workers in the group now, noted in ``_seen_workers`` (empty if Kafka does not say)."""
        try:
            present = self.view.worker_ids()
        except (KafkaException, TimeoutError) as e:
            log.warning("worker %s could not describe its group: %s", self.worker_id, e)
            return set()
        self._seen_workers |= present
        return present

    async def _own(self, restored: PartitionState, start_offset: int) -> None:
        """Runs a partition just assigned. Its log can hold messages its previous owner had not processed,
        which must come before anything newer for the same addresses (guarantee 1: in order per sender),
        so until the consumer has read the log up to where it ends once this returns (_caught_up), the
        runtime holds the messages this worker routes to it, and its sources (ingress partitions, Kinesis
        streams) are not read. The open epoch is committed first: messages this worker sent to the
        partition while it was another's are then in the log before that end."""
        self.store.own(restored, start_offset)
        self.runtime.own(restored.partition, restored.timers.values(), restored.parked, catching_up=True)
        await self.runtime.commit_async()
        if self.kinesis_forwarder is not None:
            await self.kinesis_forwarder.own([restored.partition])

    def _read_sources(self, restored: PartitionState) -> None:
        """A partition caught up with its log (_caught_up): the messages held for it go to their mailboxes,
        and its Kinesis streams are read from its restored positions."""
        self.runtime.caught_up(restored.partition)
        if self.kinesis is not None and restored.partition in self.runtime.processors:
            self.kinesis.own(restored)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.rebalances += 1
        owned = [tp.partition for tp in partitions if tp.topic == self.topics.messages]
        for partition in owned:
            self._catching_up.pop(partition, None)
        if partitions and self._usable():
            self._in_loop(self._release(owned))  # commits the records read from their ingress partitions too
            for ingress, ingress_consumer in self.ingresses:
                assigned = {(tp.topic, tp.partition) for tp in ingress_consumer.assignment()}
                leaving = [tp for tp in self._ingress_partitions(ingress, owned) if (tp.topic, tp.partition) in assigned]
                if leaving:
                    ingress_consumer.incremental_unassign(leaving)

    async def _release(self, partitions: list[int]) -> None:
        owned = sorted(p for p in partitions if p in self.runtime.processors)
        if self.kinesis is not None:
            await self.kinesis.release(partitions)  # no record of their streams is routed after this
        await self.runtime.release(partitions)  # commits the epoch, with the ingress positions too
        self.store.release(partitions)
        if self.kinesis_forwarder is not None:
            await self.kinesis_forwarder.release(partitions)
        if owned:
            log.info("worker %s handed over partitions %s", self.worker_id, owned)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group gave our partitions to others (we were away too long): nothing of ours may commit
        any more. The worker stops; started again, it joins as a new member."""
        self.store.lost = True  # at once, in this thread: a commit retrying after a rebalance must not go on
        self._fail(RuntimeError(f"worker {self.worker_id} lost partitions {sorted(tp.partition for tp in partitions)} "
                                "to the group (it was unresponsive for longer than the session timeout)"))

    def _guarded(self, callback: typing.Callable[[Consumer, list[TopicPartition]], None]
                 ) -> typing.Callable[[Consumer, list[TopicPartition]], None]:
        """A rebalance callback that first notes the groups' new generations (the commits it makes need
        them) and cannot leave the worker half-assigned: if it fails (a broker that does not answer in
        time, say), the worker stops, and started again it joins afresh."""
        def guarded(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if self._closing:
                return  # everything is committed and handed over; the consumers are closing
            self._note_groups()
            try:
                callback(consumer, partitions)
            except Exception as e:  # noqa: BLE001 - any failure here must stop the worker, not hang it
                log.error("worker %s: rebalance failed: %s", self.worker_id, e)
                self._fail(RuntimeError(f"worker {self.worker_id}: rebalance failed: {e}"))
        return guarded

    def _in_loop(self, coroutine: typing.Coroutine[typing.Any, typing.Any, None]) -> None:
        """Runs ``coroutine`` on the event loop and waits for it, from a rebalance callback. Meanwhile no
        poll notes the consumers' group metadata, and a commit the coroutine waits for needs the groups'
        current generations (another group of this worker may be rebalancing too): noted here instead."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        while True:
            try:
                return future.result(timeout=GROUPS_NOTED_EVERY_SECONDS)
            except TimeoutError:
                self._note_groups()

    def _note_groups(self) -> None:
        """Notes every consumer's group metadata for the commits (in the consumer thread: see note_group)."""
        self.store.note_group(None, self.consumer.consumer_group_metadata())
        for ingress, consumer in self.ingresses:
            self.store.note_group(ingress.spec.id, consumer.consumer_group_metadata())

    def _usable(self) -> bool:
        """Whether hand-overs may still commit: not after a failure (only the last commit is safe)."""
        return self._loop is not None and not self._loop.is_closed() and not self.runtime.failed.done()

    def _fail(self, error: Exception) -> None:
        self._loop.call_soon_threadsafe(lambda: self.runtime.failed.done() or self.runtime.failed.set_exception(error))

    def _restore(self, partition: int, deadline: float) -> PartitionState:
        """Reads a partition's changelog from the beginning (read_committed), with a progress line."""
        restored = PartitionState(partition)
        with PartitionReader(self._common, f"{self.app}-restore", self.topics.state, partition) as reader:
            low, high = retrying("changelog watermarks", deadline, lambda: reader.watermarks(timeout=5))
            if high <= low:
                return restored
            started = reported = moved = time.monotonic()
            position = reader.position
            try:
                for batch in reader.batches(low, high):
                    for record in batch:
                        restored.apply(record.key(), record.value())
                    self.restoring[partition] = max(0, high - reader.position)
                    if reader.position != position:
                        position, moved = reader.position, time.monotonic()
                    elif time.monotonic() - moved > COMMITTED_WAIT_SECONDS:
                        # held back by an open transaction: one of a worker that left, as in _committed
                        self._fence_departed()
                        moved = time.monotonic()
                    if time.monotonic() - reported > 2:
                        reported = time.monotonic()
                        log.info("worker %s restoring partition %d: %d of %d changelog records", self.worker_id,
                                 partition, reader.position - low, high - low)
            finally:
                self.restoring.pop(partition, None)
            log.info("worker %s restored partition %d: %d addresses, %d timers in %.1f s", self.worker_id, partition,
                     len(restored.state), len(restored.timers), time.monotonic() - started)
            return restored
