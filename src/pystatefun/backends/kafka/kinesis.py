"""Kinesis ingresses and egresses on the Kafka backend.

**Ingress.** A stream is read by the owner of partition ``partition_of(stream)`` of ``<app>.messages``,
and its shards' positions are changelog records of that partition (kind ``k``, records.py), written in
the epochs' transactions. So a stream moves with its partition: when the partition is assigned and its
log is read up to where it ended then (what the previous owner had not processed comes first: worker.py),
its restored positions start the reading; before a hand-over commits, the reading stops first
(``KinesisIngress.unfollow``), so the last transaction holds the position after the last record routed,
and the next owner reads on from there: no record is read twice or skipped. A worker that dies leaves
the positions of its last commit, and its open transaction is fenced (worker.py). A record's messages
for addresses of the stream's own partition are processed where it is read; the others go through
``<app>.messages`` (even to a partition this worker runs: that partition and the stream can change hands
apart, and a key's earlier messages in the log must come first), as for Kafka ingresses. One
worker reads all the shards of a stream (shards of several streams spread over the workers); reading is
rarely the bottleneck, since one GetRecords returns up to 10,000 records.

**Egress.** A Kinesis egress's records commit in the epoch's transaction to ``<app>.kinesis-egress``, at
the partition of their partition key (so the records of one key keep their order), and the owner of
partition i puts partition i's records on Kinesis: PutRecords, then the forwarder group's offset is
committed. A hand-over waits for the batch in flight; a crash between the two (or a hand-over while Kinesis
does not answer for RELEASE_WAIT_SECONDS) puts that batch again, at most ``maxOutstandingRecords`` records. A record's id (``recordIds: true``) is ``<app>-<partition>-<offset>``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import typing

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from pystatefun.backends.kafka.records import PartitionState
from pystatefun.backends.kafka.topics import Topics
from pystatefun.io.kafka import consume_batch
from pystatefun.io.kinesis.egress import BUG_PAUSE_SECONDS, KinesisEgress
from pystatefun.io.kinesis.records import put_entry
from pystatefun.io.kinesis.ingress import KinesisIngress
from pystatefun.wire.kinesis_egress_pb2 import KinesisEgressRecord

log = logging.getLogger("pystatefun.kinesis")

POLL_SECONDS = 0.1
RETRY_SECONDS = 1.0  # after Kafka refused a forwarder's offset commit or read
RELEASE_WAIT_SECONDS = 5.0  # how long a hand-over waits for the batch in flight before it gives it up


class KinesisStreams:
    """Which streams of the Kinesis ingresses this worker reads: those of the partitions it owns."""

    def __init__(self, ingresses: typing.Sequence[KinesisIngress], partition_of: typing.Callable[[str], int]):
        self.ingresses = ingresses
        self.partition_of = partition_of

    def _streams(self, partitions: typing.Collection[int]) -> list[tuple[KinesisIngress, str]]:
        return [(ingress, stream) for ingress in self.ingresses for stream in ingress.routes
                if self.partition_of(stream) in partitions]

    def own(self, restored: PartitionState) -> None:
        """Starts reading the streams of a partition just assigned, from its restored positions."""
        for ingress, stream in self._streams({restored.partition}):
            positions = {shard: position for (source, s, shard), position in restored.kinesis.items()
                         if source == ingress.spec.id and s == stream}
            if not ingress.follow(stream, positions, restored.partition):
                log.info("Kinesis ingress %s stopped: stream %s (partition %d) is left to its next owner",
                         ingress.spec.id, stream, restored.partition)
                continue
            log.info("Kinesis ingress %s: stream %s is read here (partition %d)", ingress.spec.id, stream,
                     restored.partition)

    async def release(self, partitions: typing.Collection[int]) -> None:
        """Stops reading the streams of partitions being handed over (before their last commit)."""
        for ingress, stream in self._streams(partitions):
            await ingress.unfollow(stream)


class KinesisForwarder:
    """Puts the Kinesis egress records of the partitions this worker owns (module docstring)."""

    def __init__(self, topics: Topics, client_config: dict[str, typing.Any], egresses: typing.Sequence[KinesisEgress]):
        self.topics = topics
        self.egresses = {egress.id: egress for egress in egresses}
        # records taken at once: the smallest maxOutstandingRecords, so no egress has more in flight
        self.batch = min(egress.spec.max_outstanding_records for egress in egresses)
        self._consumer = Consumer({
            **client_config,
            "group.id": f"{topics.app}.kinesis-egress",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",  # only records whose epoch committed
        })
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kinesis-forwarder")
        self._owned: set[int] = set()
        self._cycle = asyncio.Lock()  # held from a poll until its records are put and their offsets committed
        self._task: asyncio.Task | None = None
        # set by close(): a hand-over still running then (the worker stopping amid a rebalance) must not
        # start forwarding again on the closed consumer
        self._closed = False

    async def own(self, partitions: typing.Collection[int]) -> None:
        """Forwards these partitions too, from the forwarder group's committed offsets (assigned in the
        consumer's thread, between two polls: the batch in flight goes on)."""
        if self._closed:
            return
        await asyncio.get_running_loop().run_in_executor(self._thread, self._assign, list(partitions))
        self._owned |= set(partitions)
        self._start_task()

    async def release(self, partitions: typing.Collection[int]) -> None:
        """Stops forwarding these partitions once the batch in flight is put and committed. When Kinesis
        does not take it within RELEASE_WAIT_SECONDS, the batch is given up: the next owner puts it again."""
        leaving = [p for p in partitions if p in self._owned]
        if not leaving or self._closed:
            return
        try:
            await asyncio.wait_for(self._cycle.acquire(), RELEASE_WAIT_SECONDS)
        except TimeoutError:
            log.warning("Kinesis egress forwarder: the batch in flight is not put after %.0f s; partitions %s are "
                        "handed over without it (their next owner puts it again)", RELEASE_WAIT_SECONDS, sorted(leaving))
            await self._stop_task()
            await self._cycle.acquire()
        try:
            unassign = [TopicPartition(self.topics.kinesis_egress, p) for p in leaving]
            await asyncio.get_running_loop().run_in_executor(self._thread, self._consumer.incremental_unassign, unassign)
            self._owned -= set(leaving)
        finally:
            self._cycle.release()
        self._start_task()

    def _start_task(self) -> None:
        if self._task is None and self._owned and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._forward_loop(), name="kinesis-forwarder")

    async def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def close(self) -> None:
        self._closed = True
        await self._stop_task()
        await asyncio.get_running_loop().run_in_executor(self._thread, self._consumer.close)
        self._thread.shutdown()

    def _assign(self, partitions: list[int]) -> None:
        wanted = [TopicPartition(self.topics.kinesis_egress, p) for p in partitions]
        committed = self._consumer.committed(wanted, timeout=30)
        self._consumer.incremental_assign([TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                                           for tp in committed])

    async def _forward_loop(self) -> None:
        while True:
            async with self._cycle:
                try:
                    await self._forward_batch()
                except Exception:  # a bug: the forwarder must not end silently, with records waiting behind it
                    log.exception("Kinesis egress forwarder: forwarding failed; trying again in %.0f s", BUG_PAUSE_SECONDS)
                    await asyncio.sleep(BUG_PAUSE_SECONDS)
            await asyncio.sleep(0)  # a hand-over waiting for the lock gets it between two batches

    async def _forward_batch(self) -> None:
        """One poll of the owned partitions: its records put on Kinesis, then their offsets committed."""
        loop = asyncio.get_running_loop()
        try:
            batch = await loop.run_in_executor(self._thread, consume_batch, self._consumer, self.batch, POLL_SECONDS)
        except KafkaException as e:
            log.warning("Kinesis egress forwarder: reading %s failed (%s); again in %.0f s",
                        self.topics.kinesis_egress, e, RETRY_SECONDS)
            await asyncio.sleep(RETRY_SECONDS)
            return
        records = [record for record in batch if record.error() is None]
        if not records:
            return
        by_egress: dict[str, list[tuple[str, dict[str, typing.Any]]]] = {}
        for record in records:
            egress = self.egresses.get(record.key().decode())
            if egress is None:
                log.error("Kinesis egress forwarder: a record of egress %s, which the module no longer has; dropped",
                          record.key().decode())
                continue
            out = KinesisEgressRecord.FromString(record.value())
            record_id = f"{self.topics.app}-{record.partition()}-{record.offset()}" if egress.spec.record_ids else None
            by_egress.setdefault(egress.id, []).append((out.stream, put_entry(out, record_id)))
        for egress_id, entries in by_egress.items():
            await self.egresses[egress_id].putter.put_all(entries)
        ends: dict[int, int] = {}
        for record in records:
            ends[record.partition()] = max(ends.get(record.partition(), 0), record.offset() + 1)
        offsets = [TopicPartition(self.topics.kinesis_egress, p, offset) for p, offset in ends.items()]
        while True:
            try:
                await loop.run_in_executor(self._thread, lambda: self._consumer.commit(offsets=offsets, asynchronous=False))
                return
            except KafkaException as e:
                log.warning("Kinesis egress forwarder: the offsets of put records were not committed (%s); again in "
                            "%.0f s", e, RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
