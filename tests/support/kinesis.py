"""Two independent Kinesis emulators for the Kinesis ingress and egress tests: moto's server (Python,
``moto[server]`` in the dev extra) and kinesalite (Node.js, installed from npm by scripts/kinesalite).
Neither is Kinesis; each gets some things wrong in its own way, so a test that passes against both
depends less on one emulator's quirks. Each runs as a real process on a free port of 127.0.0.1::

    with Kinesalite(tmp_path) as kinesis:
        kinesis.create_stream("orders", shards=2)
        kinesis.put("orders", [("key", b"payload")])
        kinesis.kill(); kinesis.restart()        # kinesalite keeps its streams in LevelDB
        assert kinesis.read_all("orders")[0]["data"] == b"payload"

Faults: ``kill()`` (SIGKILL), ``restart()`` (kinesalite only: the same port and data), ``pause()`` and
``resume()`` (SIGSTOP and SIGCONT: connections are accepted by the kernel but not answered, so clients
time out, and nothing is lost).

Departures from Kinesis that matter to a reader are in tests/kinesis/test_emulators.py (strict xfails).
The main one is moto's resharding: it routes a record to the first shard, in creation order, whose hash
range holds its key, closed or not, so after a split or merge records still go to the closed parent; a
merge copies both parents' records into the child (they are then in the parents and the child), and a
split writes the parent's records again through that routing. Kinesis and kinesalite leave every record
in the shard it was written to and write new ones to the open children only. Tests that check which
records a reader gets across a reshard can only rely on kinesalite. moto also loses records that
concurrent PutRecords calls to one stream were told were taken (4 threads putting 20,000 records left
19,854 readable; one thread loses none): tests with more than one writer to a stream rely on kinesalite.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import botocore.config
import botocore.exceptions
import botocore.session

from e2e import processes

REPO = Path(__file__).resolve().parents[2]
KINESALITE_SCRIPT = REPO / "scripts" / "kinesalite"

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

PUT_RECORDS_MAX_COUNT = 500  # Kinesis' limits for one PutRecords request
PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024


class KinesisEmulator:
    """One emulator process; subclasses say which program it runs."""

    name: str

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = processes.free_port()
        self.process: subprocess.Popen | None = None
        self.paused = False
        self._client: typing.Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}-{self.port}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> KinesisEmulator:
        """Starts the process and returns once it answers Kinesis requests."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(self.command(), stdout=output, stderr=subprocess.STDOUT)
        self.paused = False
        probe = self.client(read_timeout=1, attempts=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
            try:
                probe.list_streams()
                return self
            except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError,
                    botocore.exceptions.ReadTimeoutError):
                time.sleep(0.1)
        self.kill()  # running but never answering: it must not outlive the test
        raise TimeoutError(f"{self.name} did not answer on {self.endpoint}: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM (after SIGCONT if paused: a stopped process does not act on SIGTERM), then SIGKILL."""
        self.resume()
        processes.terminate(self.process, 10)

    def kill(self) -> None:
        """SIGKILL: no chance to write anything more."""
        processes.kill(self.process)
        self.paused = False

    def restart(self) -> KinesisEmulator:
        """Starts it again (stopping it first if it runs) on the same port, with the data it had."""
        raise NotImplementedError(f"{self.name} keeps its data in memory only, so it cannot be restarted with its "
                                  "streams; use pause() and resume() for an emulator that stops answering")

    def pause(self) -> None:
        """SIGSTOP: requests are accepted by the kernel but not answered until resume()."""
        assert self.process is not None and self.process.poll() is None, f"{self.name} does not run"
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after pause(); nothing if not paused."""
        if self.paused and self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def __enter__(self) -> KinesisEmulator:
        """Starts it; again on a new port if the one picked as free was taken meanwhile (a port is only
        free until someone binds it)."""
        for attempt in range(3):
            try:
                return self.start()
            except RuntimeError as e:
                if "address already in use" not in str(e).lower() or attempt == 2:
                    raise
                self.port = processes.free_port()
                self._client = None
        raise AssertionError("unreachable")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def variables(self) -> dict[str, str]:
        """Credentials and region for the default credential chain of code under test (the emulators accept
        any); the endpoint is not among them: code under test is given ``endpoint`` in its settings."""
        return dict(CREDENTIALS)

    def client(self, read_timeout: float = 5, attempts: int = 3) -> typing.Any:
        """A botocore Kinesis client for this emulator, with timeouts short enough for a test to fail fast
        (the defaults, 60 s and 5 attempts, turn a paused emulator into minutes of waiting)."""
        config = botocore.config.Config(connect_timeout=2, read_timeout=read_timeout,
                                        retries={"total_max_attempts": attempts, "mode": "standard"})
        return botocore.session.get_session().create_client(
            "kinesis", region_name=CREDENTIALS["AWS_DEFAULT_REGION"], endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], config=config)

    @property
    def _kinesis(self) -> typing.Any:
        """The client the helpers below share."""
        if self._client is None:
            self._client = self.client()
        return self._client

    def create_stream(self, name: str, shards: int = 1) -> None:
        self._kinesis.create_stream(StreamName=name, ShardCount=shards)
        self.wait_active(name)

    def wait_active(self, name: str, timeout: float = 10.0) -> None:
        """Waits until the stream is ACTIVE: creating and resharding are asynchronous in Kinesis (and in
        kinesalite, though started with no delay), and a stream that is not ACTIVE refuses resharding."""
        deadline = time.monotonic() + timeout
        while True:
            status = self._kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            if status == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"stream {name} still {status} after {timeout} s on {self.name}")
            time.sleep(0.02)

    def put(self, stream: str, records: list[tuple[str, bytes]],
            explicit_hash_keys: list[str | None] | None = None) -> list[dict[str, str]]:
        """Writes ``(partition key, data)`` records with PutRecords, in requests within Kinesis' limits, and
        writes the entries a request failed again until none fails. Returns each record's ``ShardId`` and
        ``SequenceNumber``, in the order given. Records are written in order, so records with one partition
        key are in order in their shard unless an entry failed and was written again after a later one."""
        hash_keys = explicit_hash_keys if explicit_hash_keys is not None else [None] * len(records)
        assert len(hash_keys) == len(records), "one explicit hash key (or None) per record"
        entries = []
        for (partition_key, data), hash_key in zip(records, hash_keys):
            entry = {"PartitionKey": partition_key, "Data": data}
            if hash_key is not None:
                entry["ExplicitHashKey"] = hash_key
            entries.append(entry)
        results: list[dict[str, str]] = [{} for _ in entries]
        pending = list(range(len(entries)))
        for _ in range(20):
            failed = []
            for batch in _batches(pending, entries):
                answer = self._kinesis.put_records(StreamName=stream, Records=[entries[i] for i in batch])
                for index, result in zip(batch, answer["Records"]):
                    if "ErrorCode" in result:
                        failed.append(index)
                    else:
                        results[index] = {"ShardId": result["ShardId"], "SequenceNumber": result["SequenceNumber"]}
            if not failed:
                return results
            pending = failed
            time.sleep(0.1)
        raise RuntimeError(f"{len(pending)} records still refused by {self.name} after 20 attempts")

    def shards(self, stream: str) -> list[dict]:
        """Every shard of the stream, open and closed (ListShards, all pages)."""
        page = self._kinesis.list_shards(StreamName=stream)
        shards = list(page["Shards"])
        while page.get("NextToken"):
            page = self._kinesis.list_shards(NextToken=page["NextToken"])
            shards.extend(page["Shards"])
        return shards

    def read_all(self, stream: str) -> list[dict]:
        """Every record of every shard, open and closed, shard after shard in ListShards' order, each as
        ``{"shard", "sequence", "partition_key", "data"}``. A shard is read from TRIM_HORIZON until a page is
        empty and either has no next iterator (kinesalite at the end of a closed shard, with
        MillisBehindLatest > 0) or has MillisBehindLatest 0 (moto gives a next iterator even at the end of
        a closed shard; an empty page of an open shard has 0 on both)."""
        read = []
        for shard in self.shards(stream):
            iterator = self._kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while iterator is not None:
                page = self._kinesis.get_records(ShardIterator=iterator)
                read.extend({"shard": shard["ShardId"], "sequence": record["SequenceNumber"],
                             "partition_key": record["PartitionKey"], "data": record["Data"]}
                            for record in page["Records"])
                if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
        return read

    def split(self, stream: str, shard_id: str) -> list[str]:
        """Splits the shard at the middle of its hash range; returns the two children, lower half first."""
        shard = self._shard(stream, shard_id)
        start, end = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
        self._kinesis.split_shard(StreamName=stream, ShardToSplit=shard_id, NewStartingHashKey=str((start + end + 1) // 2))
        self.wait_active(stream)
        children = [s for s in self.shards(stream) if s.get("ParentShardId") == shard_id]
        assert len(children) == 2, f"split of {shard_id} on {self.name} made {children}"
        return [s["ShardId"] for s in sorted(children, key=_starting_hash_key)]

    def merge(self, stream: str, shard_id: str, adjacent_shard_id: str) -> str:
        """Merges two adjacent open shards; returns the child."""
        self._kinesis.merge_shards(StreamName=stream, ShardToMerge=shard_id, AdjacentShardToMerge=adjacent_shard_id)
        self.wait_active(stream)
        children = [s["ShardId"] for s in self.shards(stream)
                    if {s.get("ParentShardId"), s.get("AdjacentParentShardId")} == {shard_id, adjacent_shard_id}]
        assert len(children) == 1, f"merge of {shard_id} and {adjacent_shard_id} on {self.name} made {children}"
        return children[0]

    def adjacent_open_pair(self, stream: str) -> tuple[str, str]:
        """Two open shards whose hash ranges touch (the lower first), as MergeShards needs."""
        open_shards = sorted((s for s in self.shards(stream) if "EndingSequenceNumber" not in s["SequenceNumberRange"]),
                             key=_starting_hash_key)
        for lower, upper in zip(open_shards, open_shards[1:]):
            if int(lower["HashKeyRange"]["EndingHashKey"]) + 1 == _starting_hash_key(upper):
                return lower["ShardId"], upper["ShardId"]
        raise LookupError(f"no two adjacent open shards in {stream} on {self.name}")

    def _shard(self, stream: str, shard_id: str) -> dict:
        return next(s for s in self.shards(stream) if s["ShardId"] == shard_id)


class Moto(KinesisEmulator):
    """moto's server (every AWS service moto has, Kinesis among them), in memory."""

    name = "moto"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]


class Kinesalite(KinesisEmulator):
    """kinesalite with a LevelDB store in ``directory``, so its streams and records survive a kill.
    Streams are created, deleted and resharded with no delay (kinesalite waits 500 ms by default) and
    up to 100 shards (10 by default)."""

    name = "kinesalite"

    @property
    def data(self) -> Path:
        """The LevelDB store."""
        return self.directory / f"kinesalite-{self.port}"

    def command(self) -> list[str]:
        # The launcher scripts/kinesalite installs listens on 127.0.0.1 (--host); kinesalite's own cli.js
        # would listen on every interface.
        return [kinesalite_executable(), "--host", "127.0.0.1", "--port", str(self.port), "--path", str(self.data),
                "--createStreamMs", "0", "--deleteStreamMs", "0", "--updateStreamMs", "0", "--shardLimit", "100"]

    def restart(self) -> Kinesalite:
        self.stop()
        self.start()
        return self


def kinesalite_executable() -> str:
    """The path of kinesalite's executable, installed by scripts/kinesalite on first use (nothing to do
    when it is there). Raises with the script's output if it cannot be installed (no node or npm, no
    registry)."""
    try:
        done = subprocess.run([str(KINESALITE_SCRIPT), "install"], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"could not run {KINESALITE_SCRIPT} install: {e}") from e
    executable = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not Path(executable).is_file():
        raise RuntimeError(f"{KINESALITE_SCRIPT} install failed (exit code {done.returncode}), so kinesalite is not "
                           f"available:\n{done.stdout}\n{done.stderr}")
    return executable


EMULATORS: dict[str, type[KinesisEmulator]] = {"moto": Moto, "kinesalite": Kinesalite}


def _starting_hash_key(shard: dict) -> int:
    return int(shard["HashKeyRange"]["StartingHashKey"])


def _batches(indexes: list[int], entries: list[dict]) -> typing.Iterator[list[int]]:
    """The indexes in runs that fit one PutRecords request (count, and data plus partition keys in bytes)."""
    batch: list[int] = []
    size = 0
    for index in indexes:
        entry_size = len(entries[index]["Data"]) + len(entries[index]["PartitionKey"].encode())
        if batch and (len(batch) == PUT_RECORDS_MAX_COUNT or size + entry_size > PUT_RECORDS_MAX_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(index)
        size += entry_size
    if batch:
        yield batch
