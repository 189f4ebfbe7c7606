"""The Kafka backend's store: each epoch is one Kafka transaction; state lives in memory per partition,
rebuilt from the compacted changelog when a partition is assigned.

What one transaction carries (the epoch's effects, atomically, KIP-447 style with the consumer group's
metadata so a worker that lost its partitions can no longer commit):

* messages not processed yet: for partitions owned elsewhere (``Epoch.outbound``) and for this worker's
  own (``Epoch.volatile``, still in memory; written so that they survive a crash or a hand-over);
* changelog records: state values, timers, parked addresses, idempotency records (``<app>.state``);
* egress records: a Kafka egress's to its topics, a Kinesis egress's to ``<app>.kinesis-egress``
  (forwarded from there: backends/kafka/kinesis.py); dead letters (``<app>.dead-letters``);
* the consumer offsets: of ``<app>.messages``, up to the first message whose effects are not committed;
  of ingress topics, after the last record whose messages are in the epoch.

Positions. Every message this worker has in memory and that is in the log has a sequence number
(``Envelope.seq``), which maps here to its (partition, offset). A partition's committed offset is the
smallest offset still outstanding, else where the consumer reads next. Messages are processed per
address, not in offset order, so messages after the committed offset can be processed already: their
offsets go into the partition's changelog (``processed``) with the same transaction, and whoever reads
the partition from the committed offset again skips them. Messages the worker wrote to its own
partitions are skipped when its consumer reads them back (they are in memory already).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
import typing

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from pystatefun.backends.kafka import records
from pystatefun.backends.kafka.reading import PartitionReader
from pystatefun.backends.kafka.records import PartitionState
from pystatefun.backends.kafka.topics import Topics
from pystatefun.event_loop import prompt_handover
from pystatefun.runtime.epoch import DeadLetter, Epoch, IdempotencyRecord, StoredValue
from pystatefun.runtime.envelope import Envelope
from pystatefun.runtime.specs import StateSpec

log = logging.getLogger("pystatefun.kafka")


# A transaction that cannot commit within this fails the commit, which stops the worker (a restart
# continues from the last commit) instead of waiting forever, e.g. on a group stuck in a rebalance.
COMMIT_TIMEOUT_SECONDS = 30
# The group refuses a transaction's offsets when it moved to a new generation after the offsets' group
# metadata was taken: a rebalance began (another worker joined or left). That is not a failure: the
# transaction aborts and the same epoch commits again with the new generation, once the consumer
# rejoined (KIP-447; Kafka Streams does the same). Partitions do not move meanwhile: a revoked one
# waits for our revoke callback, which commits after this epoch.
REGROUP_ERRORS = frozenset({KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS})
REGROUP_RETRY_SECONDS = 0.2
# A worker that stops and starts again at once can have its new producers fenced by another worker that
# saw it leave and fences it then (worker.py _fence_departed), racing its restart. A worker whose producer
# is fenced makes it again, once in its life, and commits the epoch again: the consumer group's generation,
# committed in the same transaction, still keeps a real zombie out (KIP-447). A second fencing fails the
# commit as before (two processes with the same --worker-id would otherwise fence each other forever).
FENCED_ERRORS = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})
# librdkafka's send_offsets_to_transaction can block past its timeout when the group coordinator moved
# (confluentinc/librdkafka#5456, #5511, open): a commit still running this long ends the process, like a
# kill -9, which the transactions make safe; the worker's supervisor starts it again.
COMMIT_WATCHDOG_SECONDS = COMMIT_TIMEOUT_SECONDS + 15
PARTITION_UA = -1  # librdkafka's "unassigned partition": the partitioner chooses one by the key
DEAD_LETTERS_TIMEOUT_SECONDS = 5  # reading the dead letters for the admin API
FENCE_TIMEOUT_SECONDS = 30
PRODUCERS = 2  # transactional producers that the epochs take turns with (see KafkaStore.__init__)


def kafka_error(exception: BaseException) -> KafkaError | None:
    """The Kafka error ``exception`` reports, if it does. A fatal error (a fencing) that the client raises
    inside ``flush()`` can surface as a SystemError caused by it: the client then calls a delivery
    callback with the KafkaException still pending, and Python refuses the callback's result."""
    if isinstance(exception, SystemError):
        exception = exception.__cause__
    if isinstance(exception, KafkaException) and exception.args and isinstance(exception.args[0], KafkaError):
        return exception.args[0]
    return None


def transactional_ids(instance: str) -> list[str]:
    """The transactional ids of the producers of the worker named ``instance`` (see KafkaStore)."""
    return [f"{instance}-{n}" for n in range(PRODUCERS)]


def fence(client_config: dict[str, typing.Any], instance: str) -> None:
    """Fences the producers of the worker named ``instance``, from another process: its open transaction
    aborts now instead of after the transaction timeout, and it can never commit again."""
    ids = transactional_ids(instance)
    with concurrent.futures.ThreadPoolExecutor(len(ids), thread_name_prefix="pystatefun-fence") as threads:
        for done in [threads.submit(lambda i=i: Producer({**client_config, "transactional.id": i}).init_transactions(
                FENCE_TIMEOUT_SECONDS)) for i in ids]:
            done.result()


@dataclasses.dataclass
class Accounting:
    """What one epoch's transaction commits of the positions (see ``KafkaStore._account``)."""

    offsets: dict[str | None, list[TopicPartition]] = dataclasses.field(default_factory=dict)  # by source
    processed: dict[int, bytes] = dataclasses.field(default_factory=dict)  # partition -> changelog value
    # for taking it back: (seq, partition, offset) of the messages consumed and of those written,
    # processed offsets dropped as passed, and the partitions' earlier ``_processed_written``
    consumed: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    written: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    passed: dict[int, set[int]] = dataclasses.field(default_factory=dict)
    processed_written: dict[int, bool] = dataclasses.field(default_factory=dict)


class KafkaStore:
    """See the module docstring. The loop and the committer thread share it under one lock."""

    def __init__(self, topics: Topics, client_config: dict[str, typing.Any], producer_config: dict[str, typing.Any]):
        """``client_config``: what every client of the cluster gets (bootstrap servers, properties);
        ``producer_config``: the transactional producer's own settings."""
        self.topics = topics
        self._client_config = client_config
        self.partitions = topics.partitions
        self.instance = producer_config["transactional.id"]
        # Epochs take turns between PRODUCERS transactional producers: a transaction that begins right after
        # the same producer's last commit waits ~20 ms (the broker answers CONCURRENT_TRANSACTIONS while it
        # writes that commit's markers, and librdkafka asks again 20 ms later), a third of a commit here.
        # One commit still runs at a time, so the log keeps the epochs' order.
        self._producer_config = {**client_config, **producer_config}
        self._producers = [Producer({**self._producer_config, "transactional.id": transactional_id})
                           for transactional_id in transactional_ids(self.instance)]
        self._renewed = False  # whether a fenced producer was made again already (FENCED_ERRORS)
        for producer in self._producers:
            producer.init_transactions(60)  # fences this worker's previous life: its open transaction aborts
        self._producer = self._producers[0]  # the one the epoch being committed uses (see _write)
        # by source (ingress id; None: <app>.messages): the consumer group metadata the offsets commit with,
        # as the consumer thread noted it last (see note_group)
        self._group_metadata: dict[str | None, bytes] = {}
        self._lock = threading.Lock()
        self._committer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pystatefun-commit")
        self.local: dict[int, PartitionState] = {}  # owned partitions' changelog contents
        self._timer_partition: dict[int, int] = {}
        self._positions: dict[int, tuple[int, int]] = {}  # seq -> (partition, offset)
        self._outstanding: dict[int, set[int]] = {}  # partition -> offsets whose effects are not committed
        self._read_position: dict[int, int] = {}  # partition -> next offset the consumer delivers
        self._self_written: dict[int, set[int]] = {}  # partition -> offsets written here, skipped when read
        # partition -> offsets at or after the committed offset whose effects are committed (see above)
        self._processed: dict[int, set[int]] = {}
        self._processed_written: dict[int, bool] = {}  # whether the changelog's last value has entries
        self._specs: dict[str, dict[str, StateSpec]] = {}
        # the dead letters counted so far: (first offset then, offset counted up to, count); see dead_letter_count
        self._dead_letters_counted = (0, 0, 0)
        self._counting_dead_letters = threading.Lock()
        # set by the consumer thread when the group gave our partitions to others: nothing may commit
        self.lost = False
        # the error of a commit that failed: every later one is refused, for the positions and the state
        # in memory are ahead of the log from then on (a restart continues from the last commit)
        self._failure: BaseException | None = None

    def note_group(self, source: str | None, metadata: bytes) -> None:
        """The consumer group metadata of ``source``'s consumer (None: of ``<app>.messages``; else a Kafka
        ingress's), noted by the consumer thread after each poll and in each rebalance callback. Asking the
        consumer from the committer thread instead would wait while the consumer thread polls (the client
        lets one thread at a time use a consumer), and forever while a revoke callback waits for a commit."""
        self._group_metadata[source] = metadata

    # -- ownership ----------------------------------------------------------------------------------------

    def own(self, restored: PartitionState, start_offset: int) -> None:
        """A partition assigned to this worker, with its restored changelog, read from ``start_offset``."""
        with self._lock:
            p = restored.partition
            self.local[p] = restored
            for timer_id in restored.timers:
                self._timer_partition[timer_id] = p
            self._outstanding[p] = set()
            self._self_written[p] = set()
            self._processed[p] = {o for o in restored.processed if o >= start_offset}
            self._processed_written[p] = bool(restored.processed)
            self._read_position[p] = start_offset

    def release(self, partitions: typing.Iterable[int]) -> None:
        with self._lock:
            for p in partitions:
                restored = self.local.pop(p, None)
                if restored is not None:
                    for timer_id in restored.timers:
                        self._timer_partition.pop(timer_id, None)
                self._outstanding.pop(p, None)
                self._self_written.pop(p, None)
                self._processed.pop(p, None)
                self._processed_written.pop(p, None)
                self._read_position.pop(p, None)
            self._positions = {seq: pos for seq, pos in self._positions.items() if pos[0] in self.local}

    def read_positions(self) -> dict[int, int]:
        with self._lock:
            return dict(self._read_position)

    def read(self, partition: int, offset: int, seq_for: typing.Callable[[], int]) -> int | None:
        """A message the consumer read: its new sequence number, or None when it was written here and is
        in memory already (or was processed)."""
        with self._lock:
            self._read_position[partition] = offset + 1
            written = self._self_written.get(partition)
            if written is not None and offset in written:
                written.discard(offset)
                return None
            if offset in self._processed.get(partition, ()):
                return None  # processed before, by this worker or the partition's previous owner
            seq = seq_for()
            self._positions[seq] = (partition, offset)
            self._outstanding[partition].add(offset)
            return seq

    # -- what the runtime and the admin API read ----------------------------------------------------------

    def load_state(self, typename: str, id: str) -> dict[str, StoredValue]:
        with self._lock:
            for state in self.local.values():
                values = state.state.get((typename, id))
                if values is not None:
                    return dict(values)
        return {}

    def load_inbox(self, typename: str, id: str, after_seq: int, limit: int) -> list[Envelope]:
        raise AssertionError("the Kafka backend keeps full mailboxes in memory (Runtime(spill=False))")

    def idempotency(self, key: str, now_ms: int) -> IdempotencyRecord | None:
        with self._lock:
            for state in self.local.values():
                record = state.idempotency.get(key)
                if record is not None and record.expires_ms > now_ms:
                    return record
        return None

    def addresses(self, typename: str, after: str = "", limit: int = 100) -> list[str]:
        with self._lock:
            ids = sorted(id for state in self.local.values() for (t, id) in state.state if t == typename and id > after)
        return ids[:limit]

    def dead_letters(self, after: int = 0, limit: int = 100) -> list[dict[str, typing.Any]]:
        """The committed dead letters after ``after`` (seq = offset in ``<app>.dead-letters`` + 1), oldest
        first: read from the topic, so every worker lists all of them."""
        letters: list[dict[str, typing.Any]] = []
        with PartitionReader(self._client_config, f"{self.topics.app}-admin", self.topics.dead_letters, 0) as reader:
            low, high = reader.watermarks(timeout=DEAD_LETTERS_TIMEOUT_SECONDS)
            deadline = time.monotonic() + DEAD_LETTERS_TIMEOUT_SECONDS
            for batch in reader.batches(max(after, low), high, deadline, max_records=limit):
                letters += [records.decode_dead_letter(r.offset(), r.value(), r.headers()) for r in batch]
                if len(letters) >= limit:
                    break
        return letters[:limit]

    def dead_letter(self, seq: int) -> DeadLetter | None:
        """Dead letter ``seq`` (the record at offset seq - 1 of ``<app>.dead-letters``) as the runtime made
        it, None when there is none (a replay sends it again); read from the topic, by any worker."""
        with PartitionReader(self._client_config, f"{self.topics.app}-admin", self.topics.dead_letters, 0) as reader:
            low, high = reader.watermarks(timeout=DEAD_LETTERS_TIMEOUT_SECONDS)
            deadline = time.monotonic() + DEAD_LETTERS_TIMEOUT_SECONDS
            if not low < seq <= high:
                return None
            for batch in reader.batches(seq - 1, seq, deadline, max_records=1):
                for record in batch:
                    if record.offset() == seq - 1:
                        return records.dead_letter_of(record.value(), record.headers())
        return None  # a transaction marker or an aborted record: no dead letter has this seq

    def dead_letter_count(self) -> int:
        """How many dead letters ``<app>.dead-letters`` holds (a blocking call, for a thread). Read through
        once, then only the records added since the last call; from the start again if retention dropped
        records. Transaction markers take offsets too, so the offsets alone do not tell."""
        with self._counting_dead_letters, PartitionReader(self._client_config, f"{self.topics.app}-admin",
                                                          self.topics.dead_letters, 0) as reader:
            low, high = reader.watermarks(timeout=DEAD_LETTERS_TIMEOUT_SECONDS)
            first, counted_to, count = self._dead_letters_counted
            if low > first:
                first, counted_to, count = low, low, 0
            deadline = time.monotonic() + DEAD_LETTERS_TIMEOUT_SECONDS
            for batch in reader.batches(counted_to, high, deadline):
                count += len(batch)
            self._dead_letters_counted = (first, max(counted_to, reader.position), count)
            return count

    def counts(self) -> dict[str, typing.Any]:
        # dead letters: None, as counting them would mean reading <app>.dead-letters from the event loop
        # (the admin API's /dead-letters lists them); egress: Kafka egress records are in their topics
        return {"dead_letters": None, "inbox": sum(len(o) for o in self._outstanding.values()), "egress": {}}

    def function_specs(self) -> dict[str, dict[str, StateSpec]]:
        return {}  # remote functions negotiate their specs again after a restart (as in StateFun)

    def save_function_specs(self, typename: str, specs: typing.Iterable[StateSpec]) -> None:
        self._specs[typename] = {s.name: s for s in specs}

    def sweep(self, now_ms: int) -> int:
        """Drops expired values from memory (reads never return them; the changelog keeps them until
        the address is written again, and a restore drops them again)."""
        removed = 0
        with self._lock:
            for state in self.local.values():
                for key, values in list(state.state.items()):
                    for name, stored in list(values.items()):
                        if stored.expire_at is not None and stored.expire_at <= now_ms:
                            del values[name]
                            removed += 1
                    if not values:
                        del state.state[key]
                for key, record in list(state.idempotency.items()):
                    if record.expires_ms <= now_ms:
                        del state.idempotency[key]
        return removed

    # -- the epoch commit -------------------------------------------------------------------------------

    def commit(self, epoch: Epoch, partition_of: typing.Callable[[str], int]) -> None:
        self._write(epoch, partition_of)

    async def commit_async(self, epoch: Epoch, partition_of: typing.Callable[[str], int]) -> None:
        write = asyncio.get_running_loop().run_in_executor(self._committer, self._write, epoch, partition_of)
        try:
            await asyncio.wait_for(asyncio.shield(write), COMMIT_WATCHDOG_SECONDS)
        except TimeoutError:
            log.critical("an epoch commit has not finished after %d s (the Kafka client hangs when a group "
                         "coordinator moves: librdkafka#5456); exiting so that a restart continues from the last "
                         "commit", COMMIT_WATCHDOG_SECONDS)
            logging.shutdown()
            os._exit(75)

    def close(self) -> None:
        self._committer.shutdown()
        for producer in self._producers:
            producer.flush(10)

    def _write(self, epoch: Epoch, partition_of: typing.Callable[[str], int]) -> None:
        if self._failure is not None:
            raise RuntimeError(f"an earlier epoch commit failed ({self._failure}); a restart continues from the "
                               "last commit")
        deadline = time.monotonic() + COMMIT_TIMEOUT_SECONDS
        self._producer = self._producers[(self._producers.index(self._producer) + 1) % PRODUCERS]
        try:
            while True:
                try:
                    changelog = self._transaction(epoch, partition_of)
                    break
                except (KafkaException, SystemError) as e:
                    error = kafka_error(e)
                    if error is None:
                        raise
                    if error.code() in FENCED_ERRORS and not self._renewed and not self.lost:
                        self._renew_producers(epoch.number, error)
                        continue
                    if error.code() not in REGROUP_ERRORS or self.lost or time.monotonic() > deadline:
                        raise e if isinstance(e, KafkaException) else KafkaException(error) from e
                    log.info("epoch %d: the group began a rebalance (%s); committing it again with the new "
                             "generation", epoch.number, error.name())
                    time.sleep(REGROUP_RETRY_SECONDS)
        except BaseException as e:
            self._failure = e
            raise
        self._apply(changelog)

    def _renew_producers(self, epoch_number: int, error: KafkaError) -> None:
        """Makes the producers again after one was fenced (see FENCED_ERRORS): a fencing fences them all."""
        self._renewed = True
        log.warning("epoch %d: this worker's producers were fenced (%s), most likely by a worker that saw this one "
                    "leave as it restarted; making them again and committing the epoch again", epoch_number,
                    error.str())
        index = self._producers.index(self._producer)
        self._producers = [Producer({**self._producer_config, "transactional.id": transactional_id})
                           for transactional_id in transactional_ids(self.instance)]
        for producer in self._producers:
            producer.init_transactions(60)
        self._producer = self._producers[index]

    def _transaction(self, epoch: Epoch, partition_of: typing.Callable[[str], int]) -> list[tuple[int, bytes, bytes | None]]:
        """One attempt at committing ``epoch``; returns its changelog records. A failed attempt aborts and
        leaves the positions as they were before it."""
        producer = self._producer
        # Only the volatile messages have delivery callbacks: their offsets are needed before the commit
        # (see _account). Any other record that fails makes commit_transaction fail.
        errors: list[KafkaError] = []
        written: list[tuple[int, int, int]] = []  # (seq, partition, offset) of volatile messages

        def wrote(seq: int) -> typing.Callable[[KafkaError | None, Message], None]:
            def delivered(error: KafkaError | None, message: Message) -> None:
                if error is not None:
                    errors.append(error)
                else:
                    written.append((seq, message.partition(), message.offset()))
            return delivered

        topics = self.topics
        undo: Accounting | None = None
        producer.begin_transaction()
        try:
            if self.lost:
                raise RuntimeError("the group gave this worker's partitions to others")
            for envelope in epoch.volatile:
                self._send(topics.messages, records.encode_message(envelope), envelope.target.id.encode(),
                           partition_of(envelope.target.id), wrote(envelope.seq))
            for envelope in epoch.outbound:
                self._send(topics.messages, records.encode_message(envelope), envelope.target.id.encode(),
                           partition_of(envelope.target.id))
            changelog = list(self._changelog(epoch, partition_of))
            for partition, key, value in changelog:
                self._send(topics.state, value, key, partition)
            for record in epoch.egress:  # Kafka and Kinesis egresses' records: the backend has no other egress
                if record.kinesis is not None:  # by partition key, whose records then keep their order
                    self._send(topics.kinesis_egress, record.payload, record.egress_id.encode(),
                               partition_of(record.kinesis.partition_key))
                else:
                    out = record.kafka
                    self._send(out.topic, out.value_bytes, out.key.encode() if out.key else None)
            for letter in epoch.dead_letters:
                value, headers = records.encode_dead_letter(letter)
                self._send(topics.dead_letters, value, None, headers=headers)
            # Everything is delivered before the offsets go: the volatile messages' offsets are needed for
            # them, and a failed offset commit (a rebalance began) aborts, which must not meet records in
            # flight (see below)
            with prompt_handover():
                producer.flush()
            if errors:
                raise KafkaException(errors[0])
            undo = self._account(epoch, written)
            for partition, value in undo.processed.items():
                self._send(topics.state, value, records.PROCESSED_KEY, partition)
            with prompt_handover():
                for source, source_offsets in undo.offsets.items():
                    producer.send_offsets_to_transaction(source_offsets, self._group_metadata[source],
                                                         COMMIT_TIMEOUT_SECONDS)
                producer.commit_transaction(COMMIT_TIMEOUT_SECONDS)
        except BaseException:
            # aborting lets the next owner (or the next attempt) read past this one at once. Records still
            # in flight are delivered first: an abort purges them, which can leave a gap in the producer's
            # sequence numbers, and its next transaction fail with OUT_OF_ORDER_SEQUENCE_NUMBER
            try:
                producer.flush(10)
                producer.abort_transaction(10)
            except (KafkaException, SystemError):  # a fenced producer cannot abort (see kafka_error)
                pass
            if undo is not None:
                self._unaccount(undo)
            raise
        return changelog

    def _send(self, topic: str, value: bytes | None, key: bytes | None, partition: int = PARTITION_UA,
              on_delivery: typing.Callable[[KafkaError | None, Message], None] | None = None,
              headers: list | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition, on_delivery=on_delivery, headers=headers)
                return
            except BufferError:  # the client's queue is full: let it send
                self._producer.poll(0.05)

    def _changelog(self, epoch: Epoch, partition_of: typing.Callable[[str], int]) -> typing.Iterator[tuple[int, bytes, bytes | None]]:
        """The epoch's changelog records: (partition, key, value or None for a tombstone)."""
        for (typename, id), (values, changed) in epoch.state.items():
            partition = epoch.partitions_of_state[(typename, id)]
            for name in changed:
                stored = values.get(name)
                yield partition, records.state_key(typename, id, name), None if stored is None else records.encode_state(stored)
        for timer in epoch.timers_added.values():
            yield timer.partition, records.timer_key(timer.timer_id), records.encode_timer(timer)
        for timer_id in epoch.timers_removed:
            partition = self._timer_partition.get(timer_id)
            if partition is not None:
                yield partition, records.timer_key(timer_id), None
        for (typename, id), reason in epoch.parked.items():
            yield partition_of(id), records.parked_key(typename, id), None if reason is None else records.encode_parked(reason)
        for record in epoch.idempotency:
            yield record.partition, records.idempotency_key(record.key), records.encode_idempotency(record)
        for (source, stream, shard), position in epoch.source_positions.items():  # with the stream's partition
            yield partition_of(stream), records.kinesis_key(source, stream, shard), position.encode()

    def _account(self, epoch: Epoch, written: list[tuple[int, int, int]]) -> Accounting:
        """Updates the positions with this epoch (before its transaction commits, so that the consumer,
        which sees the written messages only after that, knows to skip them). Returns the offsets to
        commit with it and the changed ``processed`` changelog values, with what ``_unaccount`` needs to
        take the update back if the transaction does not commit."""
        with self._lock:
            accounting = Accounting()
            changed: set[int] = set()
            for seq in epoch.consumed:
                position = self._positions.pop(seq, None)
                if position is not None and position[0] in self._outstanding:
                    partition, offset = position
                    self._outstanding[partition].discard(offset)
                    self._processed[partition].add(offset)
                    accounting.consumed.append((seq, partition, offset))
                    changed.add(partition)
            for seq, partition, offset in written:
                if partition in self._outstanding:
                    self._positions[seq] = (partition, offset)
                    self._outstanding[partition].add(offset)
                    self._self_written[partition].add(offset)
                    accounting.written.append((seq, partition, offset))
            for partition, outstanding in self._outstanding.items():
                next_offset = self._read_position[partition]
                if outstanding:
                    next_offset = min(next_offset, min(outstanding))
                accounting.offsets.setdefault(None, []).append(TopicPartition(self.topics.messages, partition, next_offset))
                done = self._processed[partition]
                passed = {o for o in done if o < next_offset}  # behind the committed offset: never read again
                if passed:
                    done -= passed
                    accounting.passed[partition] = passed
                    changed.add(partition)
                # written when it has entries, and once more when it becomes empty (the usual case: in order)
                if partition in changed and (done or self._processed_written.get(partition)):
                    accounting.processed[partition] = records.encode_processed(done)
                    accounting.processed_written[partition] = self._processed_written.get(partition, False)
                    self._processed_written[partition] = bool(done)
            for (source, topic, partition), offset in epoch.source_offsets.items():
                accounting.offsets.setdefault(source, []).append(TopicPartition(topic, partition, offset))
            for timer in epoch.timers_added.values():
                self._timer_partition[timer.timer_id] = timer.partition
            return accounting

    def _unaccount(self, accounting: Accounting) -> None:
        """Takes back ``_account`` after its transaction aborted: the epoch's messages are outstanding
        again and the messages it wrote do not exist (read_committed readers never see them)."""
        with self._lock:
            for seq, partition, offset in accounting.written:
                self._positions.pop(seq, None)
                if partition in self._outstanding:
                    self._outstanding[partition].discard(offset)
                    self._self_written[partition].discard(offset)
            for seq, partition, offset in accounting.consumed:
                if partition in self._outstanding:
                    self._positions[seq] = (partition, offset)
                    self._outstanding[partition].add(offset)
                    self._processed[partition].discard(offset)
            for partition, passed in accounting.passed.items():
                if partition in self._processed:
                    self._processed[partition] |= passed
            for partition, before in accounting.processed_written.items():
                if partition in self._processed_written:
                    self._processed_written[partition] = before

    def _apply(self, changelog: list[tuple[int, bytes, bytes | None]]) -> None:
        """After the commit: the owned partitions' contents follow their changelog."""
        with self._lock:
            for partition, key, value in changelog:
                state = self.local.get(partition)
                if state is not None:
                    state.apply(key, value)
