"""What the Kinesis tests share: the counter module with a Kinesis ingress and egress, and keyed records
whose counts must come out exactly once and in order."""

from __future__ import annotations

import collections
import random
import threading
import time
from pathlib import Path

from kafka.harness import PLAYGROUND_DOCUMENTS, exactly_once_egress, read_all, wait_until
from support.kinesis import CREDENTIALS, KinesisEmulator

APPS = Path(__file__).parent / "apps"
ID_PREFIX = b"pystatefun-id:"


def aws_keys(emulator: KinesisEmulator) -> str:
    """``awsRegion`` and ``awsCredentials`` lines that reach the emulator (custom endpoint, basic credentials)."""
    return (f"  awsRegion: {{type: custom-endpoint, id: {CREDENTIALS['AWS_DEFAULT_REGION']}, endpoint: '{emulator.endpoint}'}}\n"
            f"  awsCredentials: {{type: basic, accessKeyId: {CREDENTIALS['AWS_ACCESS_KEY_ID']}, "
            f"secretAccessKey: {CREDENTIALS['AWS_SECRET_ACCESS_KEY']}}}\n")


def counter_module(folder: Path, emulator: KinesisEmulator, source: str | None, *, startup: str = "type: earliest",
                   bad_records: str = "", ingress_keys: str | None = None, kafka_bootstrap: str | None = None,
                   max_outstanding: int = 1000, playground: bool = True) -> Path:
    """Kinesis ingress kc/in (stream ``source``; none when None) -> kc/counter -> the Kinesis egress
    kc/kinesis-out (record ids on) and, with ``kafka_bootstrap``, the exactly-once Kafka egress kc/out.
    ``ingress_keys``: the ingress's awsRegion/awsCredentials lines instead of the emulator's endpoint.
    ``playground`` adds the playground ingress and egress, whose ports the runtime harness waits for."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "counter.py").write_text((APPS / "counter.py").read_text())
    text = "kind: pystatefun.v1/embedded\nspec:\n  functions: kc/*\n  module: counter:functions\n"
    if source is not None:
        text += f"""---
kind: io.statefun.kinesis.v1/ingress
spec:
  id: kc/in
{ingress_keys if ingress_keys is not None else aws_keys(emulator)}  startupPosition:
    {startup}
  streams:
    - stream: {source}
      valueType: kc/command
      targets: [kc/counter]
  clientConfigProperties:
    - flink.shard.discovery.intervalmillis: 300
    - flink.shard.getrecords.intervalmillis: 50
{bad_records}
"""
    text += f"""---
kind: io.statefun.kinesis.v1/egress
spec:
  id: kc/kinesis-out
{aws_keys(emulator)}  maxOutstandingRecords: {max_outstanding}
  recordIds: true
  clientConfigProperties:
    - SocketTimeout: 3000  # a paused emulator is a failed call within seconds (the default waits 30 s)
"""
    if kafka_bootstrap is not None:
        text += exactly_once_egress(kafka_bootstrap)
    if playground:
        text += PLAYGROUND_DOCUMENTS
    path = folder / "module.yaml"
    path.write_text(text)
    return path


def parse_output(record: dict) -> tuple[str | None, str, list[int]]:
    """(record id, partition key, [count, place?]) of a record the counter put on a Kinesis stream."""
    data: bytes = record["data"]
    record_id = None
    if data.startswith(ID_PREFIX):
        head, _, data = data.partition(b"\n")
        record_id = head[len(ID_PREFIX):].decode()
    return record_id, record["partition_key"], [int(n) for n in data.split()]


class KeyedRecords:
    """Records of random keys put on ``stream``, each naming where its count goes (``target``: ``<egress>
    <stream or topic>``) and its place among its key's records; checks that each key's counts come out as
    1..n with count == place."""

    def __init__(self, emulator: KinesisEmulator, stream: str, target: str, keys: int = 20, seed: int = 5):
        self.emulator, self.stream, self.target = emulator, stream, target
        self.keys = [f"k{n}" for n in range(keys)]
        self.rng = random.Random(seed)
        self.sent: dict[str, int] = collections.defaultdict(int)
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def put(self, count: int) -> None:
        with self._lock:  # the places of a key must reach the stream in order
            batch = []
            for _ in range(count):
                key = self.rng.choice(self.keys)
                self.sent[key] += 1
                batch.append((key, f"{self.target} {self.sent[key]}".encode()))
            self.emulator.put(self.stream, batch)

    def check_kinesis(self, out: str, timeout: float = 60, duplicates_allowed: int = 0) -> list[tuple]:
        """Reads ``out`` until every count is there; each key's counts are 1..n with count == place. A record
        put twice (same record id) counts once; at most ``duplicates_allowed`` such repeats. Returns the
        parsed records."""
        parsed: list[tuple] = []

        def complete() -> bool:
            nonlocal parsed
            parsed = [parse_output(record) for record in self.emulator.read_all(out)]
            return len({record_id for record_id, _, _ in parsed}) >= self.total

        wait_until(complete, f"{self.total} counts on {out}", timeout)
        time.sleep(1)  # a moment more, so that records put more than once would show
        parsed = [parse_output(record) for record in self.emulator.read_all(out)]
        ids = collections.Counter(record_id for record_id, _, _ in parsed)
        assert None not in ids, "every record has an id (recordIds: true)"
        repeats = sum(n - 1 for n in ids.values())
        assert repeats <= duplicates_allowed, f"{repeats} records put more than once (allowed {duplicates_allowed})"
        first: dict[str, tuple] = {}
        for record in parsed:
            first.setdefault(record[0], record)
        by_key: dict[str, list[list[int]]] = collections.defaultdict(list)
        for _, key, numbers in first.values():
            by_key[key].append(numbers)
        assert {key: len(values) for key, values in by_key.items()} == dict(self.sent)
        for key, values in by_key.items():
            counts = sorted(numbers[0] for numbers in values)
            assert counts == list(range(1, self.sent[key] + 1)), f"{key}: counts missing or twice"
            assert all(numbers[0] == numbers[1] for numbers in values), f"{key}: a record counted out of order"
        return parsed


    def check_kafka(self, bootstrap: str, topic: str, timeout: float = 120) -> None:
        """The same for counts written to the exactly-once Kafka egress: read_committed, each exactly once."""
        by_key: dict[str, list[list[int]]] = collections.defaultdict(list)
        for record in read_all(bootstrap, topic, self.total, timeout=timeout):
            by_key[record.key().decode()].append([int(n) for n in record.value().split()])
        assert {key: len(values) for key, values in by_key.items()} == dict(self.sent)
        for key, values in by_key.items():
            assert [numbers[0] for numbers in values] == list(range(1, self.sent[key] + 1)), \
                f"{key}: counts out of order, missing or twice"
            assert all(numbers[0] == numbers[1] for numbers in values), f"{key}: a record counted out of order"


class Load:
    """``records.put(batch)`` in the background at a steady pace while the ``with`` block runs."""

    def __init__(self, records: KeyedRecords, batch: int = 10, every: float = 0.05):
        self.records, self.batch, self.every = records, batch, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.records.put(self.batch)
                time.sleep(self.every)
        except BaseException as e:  # noqa: BLE001 - reported by __exit__ in the test's thread
            self.error = e

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error
