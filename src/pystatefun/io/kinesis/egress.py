"""Kinesis egress (spec §3.5): ``KinesisEgressRecord`` values commit with their epoch, then are put on
their streams with ``PutRecords``.

A function's record is checked when it is emitted (a value that is not a ``KinesisEgressRecord``, no
stream, no partition key: a dead letter with the reason, as for every egress) and committed with the
epoch that holds it. Committed records wait in a queue of their own (the data dir on the embedded
backend, the ``<app>.kinesis-egress`` topic on the Kafka backend) and are forwarded from there, oldest
first, at most ``maxOutstandingRecords`` at a time; each is forgotten once Kinesis took it. So nothing
is lost while Kinesis is unreachable (records wait, functions go on), and a crash puts again at most the
records that were in flight: a ``PutRecords`` answered but not yet forgotten. Entries of a batch that
Kinesis refused (throttling, an internal error) are put again, alone, after a backoff: such an entry can
land after later records of its batch.

With ``recordIds: true`` (ours) each record's data starts with ``pystatefun-id:<id>\\n``, an id that is
the same when a record is put again, so that a reader can drop what it saw already.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import typing

from pystatefun.config.model import KinesisEgress as KinesisEgressSpec
from pystatefun.io.kinesis.client import THROTTLING, client_settings, describe, error_code, kinesis_client, retried
from pystatefun.io.kinesis.records import check_record, put_entry
from pystatefun.runtime.epoch import EgressRecord, Epoch
from pystatefun.runtime.waiting import wait_for_event
from pystatefun.wire.kinesis_egress_pb2 import KinesisEgressRecord
from pystatefun.wire.request_reply_pb2 import TypedValue

log = logging.getLogger("pystatefun.kinesis")

PUT_RECORDS_MAX = 500  # entries per PutRecords (Kinesis' limit)
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024  # data and partition keys of one PutRecords (Kinesis' limit)
BACKOFF_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BUG_PAUSE_SECONDS = 5.0  # after an error a forwarder does not expect: logged, and it goes on


class Putter:
    """Puts records on Kinesis with PutRecords: a batch per stream, the refused entries again after a
    backoff, until every record is taken. Shared by the egresses of both backends."""

    def __init__(self, spec: KinesisEgressSpec):
        self.spec = spec
        what = f"Kinesis egress {spec.id}"
        config, _ = client_settings(spec.client_config_properties, what)
        self.client = kinesis_client(spec.aws_region, spec.aws_credentials, config, what)
        self.put = 0  # records Kinesis took
        self.throttles = 0  # entries or calls refused for throughput, put again
        self.retries = 0  # other failed entries or calls, put again
        self.failing: str | None = None  # the last error, while puts fail
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"kinesis-egress-{spec.id}")

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def put_all(self, records: list[tuple[str, dict[str, typing.Any]]]) -> None:
        """Puts ``records`` ((stream, PutRecords entry), oldest first); returns once Kinesis took all of them."""
        by_stream: dict[str, list[dict[str, typing.Any]]] = {}
        for stream, entry in records:
            by_stream.setdefault(stream, []).append(entry)
        for stream, entries in by_stream.items():
            for batch in _batches(entries):
                await self._put_batch(stream, batch)

    async def _put_batch(self, stream: str, entries: list[dict[str, typing.Any]]) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while entries:
            try:
                answer = await loop.run_in_executor(self._thread, lambda: self.client.put_records(
                    StreamName=stream, Records=entries))
            except Exception as e:
                if not retried(e):
                    raise
                await self._backoff(stream, failures, error_code(e) in THROTTLING, describe(e))
                failures += 1
                continue
            refused = [(entry, result) for entry, result in zip(entries, answer["Records"]) if result.get("ErrorCode")]
            self.put += len(entries) - len(refused)
            if not refused:
                if self.failing is not None:
                    log.info("Kinesis egress %s: Kinesis takes records again", self.spec.id)
                self.failing = None
                return
            entries = [entry for entry, _ in refused]
            code, message = refused[0][1]["ErrorCode"], refused[0][1].get("ErrorMessage", "")
            await self._backoff(stream, failures, code in THROTTLING, f"{len(refused)} records refused ({code}: {message})")
            failures += 1

    async def _backoff(self, stream: str, failures: int, throttled: bool, text: str) -> None:
        if throttled:
            self.throttles += 1
        else:
            self.retries += 1
        if failures == 0 and not throttled:
            log.warning("Kinesis egress %s, stream %s: %s; putting them again with backoff", self.spec.id, stream, text)
        self.failing = text
        await asyncio.sleep(BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)])


def _batches(entries: list[dict[str, typing.Any]]) -> typing.Iterator[list[dict[str, typing.Any]]]:
    batch: list[dict[str, typing.Any]] = []
    size = 0
    for entry in entries:
        entry_size = len(entry["Data"]) + len(entry["PartitionKey"].encode())
        if batch and (len(batch) == PUT_RECORDS_MAX or size + entry_size > PUT_RECORDS_MAX_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        yield batch


class ForwardedEgress(typing.Protocol):
    instance: str

    def egress_batch(self, egress_id: str, limit: int) -> list[tuple[int, bytes]]: ...

    def drop_egress(self, egress_id: str, up_to_seq: int) -> None: ...


class KinesisEgress:
    """The embedded backend's Kinesis egress: records commit into the data dir, a forwarder puts them."""

    def __init__(self, spec: KinesisEgressSpec, store: ForwardedEgress):
        self.spec = spec
        self.id = spec.id
        self.store = store
        self.putter = Putter(spec)
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    # -- the runtime side -------------------------------------------------------------------------------

    def record(self, egress_typename: str, value: TypedValue) -> EgressRecord:
        record = check_record(value)
        return EgressRecord(self.id, record.stream, value.value, kinesis=record)

    def committed(self, epoch: Epoch) -> None:
        self._changed.set()

    def status(self) -> dict[str, typing.Any]:
        """For /health."""
        putter = self.putter
        return {"records_put": putter.put, "throttles": putter.throttles, "retries": putter.retries,
                "failing": putter.failing}

    # -- forwarding ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._changed.set()  # records committed before a restart go first
        self._task = asyncio.get_running_loop().create_task(self._forward_loop(), name=f"kinesis-egress-{self.id}")

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Puts what is committed (for up to ``drain_seconds``), then stops."""
        if self._task is not None:
            self._changed.set()
            try:
                await asyncio.wait_for(self._drained(), drain_seconds)
            except TimeoutError:
                log.warning("Kinesis egress %s: records still waiting in the data dir; they go after a restart", self.id)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.putter.close()

    async def _drained(self) -> None:
        while self.store.egress_batch(self.id, 1):
            await asyncio.sleep(0.02)

    async def _forward_loop(self) -> None:
        while True:
            await wait_for_event(self._changed, None)
            self._changed.clear()
            try:
                await self._forward_committed()
            except Exception:  # a bug: the forwarder must not end silently, with records waiting behind it
                log.exception("Kinesis egress %s: forwarding failed; trying again in %.0f s", self.id, BUG_PAUSE_SECONDS)
                self.putter.failing = "forwarding failed (see the log)"
                await asyncio.sleep(BUG_PAUSE_SECONDS)
                self._changed.set()

    async def _forward_committed(self) -> None:
        """Puts the committed records, oldest first, ``maxOutstandingRecords`` at a time, until none is left."""
        while rows := self.store.egress_batch(self.id, self.spec.max_outstanding_records):
            records = []
            for seq, payload in rows:
                record = KinesisEgressRecord.FromString(payload)
                record_id = f"{self.store.instance}-{seq}" if self.spec.record_ids else None
                records.append((record.stream, put_entry(record, record_id)))
            await self.putter.put_all(records)
            self.store.drop_egress(self.id, rows[-1][0])
