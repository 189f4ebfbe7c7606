"""Kinesis ingress (spec §3.5): the shards of each stream read into the runtime, exactly once.

Each record becomes one message per target function type at the id = the record's partition key (spec
§3.3). Where reading continues is kept per shard as a *position*, which goes into the same epoch as
the messages of the records before it (``Epoch.source_positions``), so the data dir (embedded) or the
epoch's transaction (Kafka backend), not Kinesis, says where a restart reads on: a record is read again
exactly when its messages were not committed. Positions are text:

* ``seq:<n>``: after the record with sequence number n;
* ``at:<ms>``: from the first record that arrived at or after that time (``latest`` and ``date`` starts);
* ``trim``: from the shard's oldest record (``earliest``, and every shard born after the first start);
* ``end``: the shard is closed and read to its end.

Resharding: a split or merge closes its parent shards and opens children. A child is read only once
every parent it has is read to its end (``end``), so the records of one partition key are routed in the
order Kinesis took them. The first start of a stream writes a position for every shard that exists then
(closed ones are ``end`` under ``latest``): a shard without a position later is one born since, read
from its beginning.

Throttling, an expired iterator, a stream that does not exist (yet) and an endpoint that does not
answer are asked again with backoff, counted, and shown in /health and the metrics; they never stop
the application.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
import typing

from pystatefun.config.model import KinesisIngress as KinesisIngressSpec
from pystatefun.io.kinesis.client import (
    EXPIRED_ITERATOR,
    THROTTLING,
    client_settings,
    describe,
    error_code,
    kinesis_client,
    retried,
)
from pystatefun.runtime.envelope import address
from pystatefun.runtime.processor import Runtime
from pystatefun.sdk.messages import typed_value

log = logging.getLogger("pystatefun.kinesis")

END = "end"
TRIM = "trim"
BACKOFF_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
READ_THREADS = 16  # botocore calls in flight at once per ingress (one per shard being read, up to this)


class KinesisPositions(typing.Protocol):
    instance: str

    def kinesis_positions(self, source: str) -> dict[tuple[str, str], str]: ...


def id_problem(key: str) -> str | None:
    """Why a partition key cannot be an address id, None when it can. Kinesis keys are 1-256 Unicode
    characters; the one an id cannot hold is NUL, which separates the parts of the Kafka backend's keys."""
    if "\x00" in key:
        return "the partition key contains a NUL character, which an address id cannot contain"
    return None


def _sequence(position: str) -> str | None:
    return position[4:] if position.startswith("seq:") else None


def _parents(shard: dict[str, typing.Any]) -> list[str]:
    return [shard[key] for key in ("ParentShardId", "AdjacentParentShardId") if shard.get(key)]


class KinesisIngress:
    """Reads the streams of one ``io.statefun.kinesis.v1/ingress`` into the runtime (module docstring)."""

    def __init__(self, spec: KinesisIngressSpec, runtime: Runtime, store: KinesisPositions):
        self.spec = spec
        self.runtime = runtime
        self.store = store
        what = f"Kinesis ingress {spec.id}"
        config, self.settings = client_settings(spec.client_config_properties, what)
        self.client = kinesis_client(spec.aws_region, spec.aws_credentials, config, what)
        self.routes = {routing.source: routing for routing in spec.streams}
        self.records = 0  # records read and routed
        self.elsewhere = 0  # their messages through <app>.messages (Kafka backend: another partition's address)
        self.bad_records: collections.Counter[str] = collections.Counter()  # by what was done: skip, dead-letter, fail
        self.stopped: dict[tuple[str, str], str] = {}  # shards stopped by a bad record (badRecords: fail): why
        self.throttles = 0  # calls Kinesis refused for throughput (asked again after a backoff)
        self.retries = 0  # other failed calls asked again: unreachable, expired iterators, no such stream
        self.behind: dict[tuple[str, str], int] = {}  # (stream, shard) -> MillisBehindLatest of its last read
        self.failing: dict[str, str] = {}  # stream -> the last error, while its calls fail
        self._threads = concurrent.futures.ThreadPoolExecutor(READ_THREADS, thread_name_prefix=f"kinesis-{spec.id}")
        self._streams: dict[str, _Stream] = {}
        # set by stop(): a partition assigned after it (a Kafka worker stopping amid a rebalance) must not
        # start reading on the shut-down threads; the partition's next owner reads the stream
        self._closed = False

    # -- which streams this process reads -----------------------------------------------------------------

    async def start(self) -> None:
        """Reads every stream (the embedded backend), from the positions in the data dir."""
        positions = self.store.kinesis_positions(self.spec.id)
        for stream in self.routes:
            self.follow(stream, {shard: p for (s, shard), p in positions.items() if s == stream})

    def follow(self, stream: str, positions: dict[str, str], source_partition: int | None = None) -> bool:
        """Starts reading ``stream`` from ``positions`` (shard -> position; empty: its first start).
        ``source_partition``: on the Kafka backend, the partition whose owner reads the stream
        (backends/kafka/kinesis.py), for runtime.route. False (and nothing read) once the ingress stopped."""
        if self._closed:
            return False
        follower = _Stream(self, stream, positions, source_partition)
        self._streams[stream] = follower
        follower.task = asyncio.get_running_loop().create_task(follower.run(), name=f"kinesis-{self.spec.id}-{stream}")
        follower.task.add_done_callback(self._failed)
        return True

    async def unfollow(self, stream: str) -> None:
        """Stops reading ``stream``: once this returns, none of its records is routed any more (the Kafka
        backend calls it before it commits and hands the stream's partition over)."""
        follower = self._streams.pop(stream, None)
        if follower is not None:
            await follower.stop()
        for key in [key for key in self.behind if key[0] == stream]:
            del self.behind[key]
        for key in [key for key in self.stopped if key[0] == stream]:
            del self.stopped[key]
        self.failing.pop(stream, None)

    async def stop(self) -> None:
        self._closed = True
        for stream in list(self._streams):
            await self.unfollow(stream)
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _failed(self, task: asyncio.Task) -> None:
        """A reader that raised something it does not retry (a bug): the runtime stops, a restart resumes."""
        if not task.cancelled() and task.exception() is not None and not self.runtime.failed.done():
            log.error("Kinesis ingress %s stopped: %r", self.spec.id, task.exception())
            self.runtime.failed.set_exception(task.exception())

    def status(self) -> dict[str, typing.Any]:
        """For /health."""
        return {
            "records": self.records,
            "messages_elsewhere": self.elsewhere,
            "bad_records": dict(self.bad_records),
            "throttles": self.throttles,
            "retries": self.retries,
            "streams": {stream: {"shards_reading": len(follower.readers), "shards_finished": follower.finished(),
                                 "failing": self.failing.get(stream)}
                        for stream, follower in sorted(self._streams.items())},
            "millis_behind_latest": {f"{stream}/{shard}": ms for (stream, shard), ms in sorted(self.behind.items())},
            "stopped_shards": {f"{stream}/{shard}": why for (stream, shard), why in self.stopped.items()},
        }

    # -- calls ---------------------------------------------------------------------------------------------

    async def call(self, method: str, **arguments: typing.Any) -> dict[str, typing.Any]:
        """A Kinesis call in the ingress's threads (botocore blocks)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, lambda: getattr(self.client, method)(**arguments))

    async def backoff(self, stream: str, failures: int, error: BaseException) -> None:
        """Counts a failed call, says so in the log the first time and in /health, and waits."""
        code = error_code(error)
        if code in THROTTLING:
            self.throttles += 1
        else:
            self.retries += 1
        text = describe(error)
        if failures == 0 and code not in THROTTLING:
            log.warning("Kinesis ingress %s, stream %s: %s; asking again with backoff", self.spec.id, stream, text)
        self.failing[stream] = text
        await asyncio.sleep(BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)])

    # -- records (on the event loop) -----------------------------------------------------------------------

    async def take(self, stream: str, shard: str, record: dict[str, typing.Any], source_partition: int | None) -> bool:
        """One record of ``shard``: its messages go into the open epoch with the shard's new position.
        ``source_partition``: the stream's partition on the Kafka backend (runtime.route). False when a bad
        record stopped the shard (badRecords: fail)."""
        key: str = record["PartitionKey"]
        problem = id_problem(key)
        if problem is not None:
            return await self._bad(stream, shard, record, problem)
        route = self.routes[stream]
        runtime = self.runtime
        targets = [address(target, key) for target in route.targets]
        for target in targets:  # back-pressure first: all of a record's messages go into one epoch
            if not runtime.has_room(target):
                await runtime.admit(target)
        value = typed_value(route.value_type, record["Data"])
        self.elsewhere += runtime.route_record(self.spec.id, targets, value, None, source_partition)
        self.records += 1
        self.advance(stream, shard, f"seq:{record['SequenceNumber']}")
        return True

    def advance(self, stream: str, shard: str, position: str) -> None:
        self.runtime.epoch.source_positions[(self.spec.id, stream, shard)] = position

    async def _bad(self, stream: str, shard: str, record: dict[str, typing.Any], problem: str) -> bool:
        policy = self.spec.bad_records
        where = f"{stream}/{shard}@{record['SequenceNumber']}"
        if policy.type == "fail":
            self.stopped[(stream, shard)] = f"{where}: {problem}"
            self.bad_records["fail"] += 1
            log.error("Kinesis ingress %s stopped reading %s/%s at sequence number %s: %s (badRecords: fail; use skip "
                      "or dead-letter-stream to go past such records)", self.spec.id, stream, shard,
                      record["SequenceNumber"], problem)
            return False
        if policy.type == "dead-letter-stream":
            await self._dead_letter(stream, record)
            self.bad_records["dead-letter"] += 1
        else:
            self.bad_records["skip"] += 1
            log.warning("Kinesis ingress %s skipped %s: %s", self.spec.id, where, problem)
        self.advance(stream, shard, f"seq:{record['SequenceNumber']}")
        return True

    async def _dead_letter(self, stream: str, record: dict[str, typing.Any]) -> None:
        """Puts a bad record on the dead-letter stream, asking again until Kinesis takes it (at least once:
        a crash before the epoch commits puts it again)."""
        failures = 0
        while True:
            try:
                await self.call("put_record", StreamName=self.spec.bad_records.stream, Data=record["Data"],
                                PartitionKey=record["PartitionKey"])
                return
            except Exception as e:
                if not retried(e):
                    raise
                await self.backoff(stream, failures, e)
                failures += 1


class _Stream:
    """Follows the shards of one stream: finds them, and reads each in a task of its own once its parents
    are read to their end."""

    def __init__(self, ingress: KinesisIngress, stream: str, positions: dict[str, str], source_partition: int | None):
        self.ingress = ingress
        self.stream = stream
        self.positions = dict(positions)  # shard -> its latest position (committed, or taken since)
        self.source_partition = source_partition
        self.shards: dict[str, dict[str, typing.Any]] = {}  # as ListShards said last
        self.readers: dict[str, asyncio.Task] = {}
        self.task: asyncio.Task | None = None
        self._changed = asyncio.Event()  # a shard was read to its end: its children may start

    def finished(self) -> int:
        return sum(1 for position in self.positions.values() if position == END)

    async def stop(self) -> None:
        tasks = [task for task in (self.task, *self.readers.values()) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self) -> None:
        ingress = self.ingress
        first = not self.positions
        failures = 0
        while True:
            try:
                shards = await self._list_shards()
            except Exception as e:
                if not retried(e):
                    raise
                await ingress.backoff(self.stream, failures, e)
                failures += 1
                continue
            if failures:
                log.info("Kinesis ingress %s, stream %s: answering again", ingress.spec.id, self.stream)
                failures = 0
            ingress.failing.pop(self.stream, None)
            self.shards = {shard["ShardId"]: shard for shard in shards}
            if first:
                self._first_positions()
                first = False
            self._start_readers()
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), ingress.settings.discovery_seconds)
            except TimeoutError:
                pass

    async def _list_shards(self) -> list[dict[str, typing.Any]]:
        shards: list[dict[str, typing.Any]] = []
        page = await self.ingress.call("list_shards", StreamName=self.stream)
        shards += page["Shards"]
        while page.get("NextToken"):
            page = await self.ingress.call("list_shards", NextToken=page["NextToken"])
            shards += page["Shards"]
        return shards

    def _first_positions(self) -> None:
        """The first start of the stream: a position for every shard there is, by ``startupPosition``."""
        startup = self.ingress.spec.startup_position
        for shard_id, shard in self.shards.items():
            closed = "EndingSequenceNumber" in shard["SequenceNumberRange"]
            if startup.type == "earliest":
                position = TRIM
            elif startup.type == "date":
                position = f"at:{int(startup.date.timestamp() * 1000)}"
            else:  # latest: what arrives from now on; a closed shard gets nothing more
                position = END if closed else f"at:{int(time.time() * 1000)}"
            self.positions[shard_id] = position
            self.ingress.advance(self.stream, shard_id, position)
        log.info("Kinesis ingress %s reads stream %s from %s: %d shards", self.ingress.spec.id, self.stream,
                 startup.type, len(self.shards))

    def _start_readers(self) -> None:
        for shard_id, shard in self.shards.items():
            position = self.positions.get(shard_id, TRIM)  # none: born since the first start, read from its beginning
            if shard_id in self.readers or position == END or (self.stream, shard_id) in self.ingress.stopped:
                continue
            if any(parent in self.shards and self.positions.get(parent) != END for parent in _parents(shard)):
                continue  # a parent still has records to route first
            task = asyncio.get_running_loop().create_task(self._read(shard_id, position),
                                                          name=f"kinesis-{self.stream}-{shard_id}")
            task.add_done_callback(self.ingress._failed)
            self.readers[shard_id] = task

    async def _iterator(self, shard_id: str, position: str) -> str | None:
        arguments: dict[str, typing.Any] = {"StreamName": self.stream, "ShardId": shard_id}
        sequence = _sequence(position)
        if sequence is not None:
            arguments.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=sequence)
        elif position.startswith("at:"):
            arguments.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=int(position[3:]) / 1000)
        else:
            arguments.update(ShardIteratorType="TRIM_HORIZON")
        return (await self.ingress.call("get_shard_iterator", **arguments)).get("ShardIterator")

    def _at_end(self, shard_id: str, records: list[dict[str, typing.Any]], behind: int | None) -> bool:
        """Whether a closed shard is read to its end. Kinesis says so by giving no next iterator (checked by
        the caller); an emulator may instead go on giving empty pages at the tip of a closed shard."""
        ending = self.shards.get(shard_id, {}).get("SequenceNumberRange", {}).get("EndingSequenceNumber")
        if ending is None:
            return False
        if records:
            return int(records[-1]["SequenceNumber"]) >= int(ending)
        return behind == 0

    async def _read(self, shard_id: str, position: str) -> None:
        ingress = self.ingress
        settings = ingress.settings
        iterator: str | None = None
        failures = 0
        while True:
            try:
                if iterator is None:
                    iterator = await self._iterator(shard_id, position)
                page = await ingress.call("get_records", ShardIterator=iterator, Limit=settings.max_records) \
                    if iterator is not None else {"Records": [], "NextShardIterator": None}
            except Exception as e:
                if not retried(e):
                    raise
                if error_code(e) == EXPIRED_ITERATOR:
                    iterator = None  # a new one from the last position (iterators live five minutes)
                    ingress.retries += 1
                    continue
                await ingress.backoff(self.stream, failures, e)
                failures += 1
                continue
            if failures:
                ingress.failing.pop(self.stream, None)  # answering again
                failures = 0
            records = page["Records"]
            for record in records:
                if not await ingress.take(self.stream, shard_id, record, self.source_partition):
                    return  # stopped at a bad record (badRecords: fail)
                position = f"seq:{record['SequenceNumber']}"
            self.positions[shard_id] = position
            behind = page.get("MillisBehindLatest")
            if behind is not None:
                ingress.behind[(self.stream, shard_id)] = behind
            iterator = page.get("NextShardIterator")
            if iterator is None or self._at_end(shard_id, records, behind):
                self.positions[shard_id] = END
                ingress.advance(self.stream, shard_id, END)
                ingress.behind.pop((self.stream, shard_id), None)
                self.readers.pop(shard_id, None)
                log.info("Kinesis ingress %s: shard %s/%s is closed and read to its end", ingress.spec.id,
                         self.stream, shard_id)
                self._changed.set()
                return
            if not records:
                await asyncio.sleep(settings.idle_seconds)
