"""Savepoints of large applications: the time and peak memory to restore a savepoint of N addresses (about
100 bytes of state each) and to take it back, and the size of the savepoint file.

  create    the savepoint written directly with SavepointWriter (N addresses, one state value each, plus
            a few messages, timers and parked addresses), the way any backend's take writes it;
  embedded  restored into a new data dir (8 partitions), then taken back from it (offline); the taken
            savepoint must hold the same rows;
  kafka     restored into a new application on the Kafka backend (one transaction), then taken back
            from it (stop-with-savepoint: the changelog deduplicated through a temporary SQLite file);
            the taken savepoint must hold the same rows.

Each step runs in a process of its own (spawned), so its peak RSS (VmHWM) is its own: with
several sizes (``--addresses 100000,1000000``) it shows whether memory grows with the number of
addresses. Targets (issue 21): >= 50,000 addresses/s each way, memory that does not grow with N.

The broker is the one in PYSTATEFUN_KAFKA_BOOTSTRAP, else one started here (tests/support/kafka.py).
Run: ``.venv/bin/python bench/savepoints.py``; ``--record`` appends the addresses/s and peak MiB of the
largest size to docs/benchmarks/results.json (bench/results.py).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import typing
import uuid
from pathlib import Path

import results as bench_results  # bench/results.py: --record

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

STATE_BYTES = 100
TYPENAME = "bench/account"


def make_savepoint(path: Path, addresses: int, state_bytes: int = STATE_BYTES, seed: int = 1,
                   extras: int = 1000, partitions: int = 8) -> dict[str, int]:
    """A savepoint at ``path`` of ``addresses`` addresses of ``TYPENAME`` with one state value of
    ``state_bytes`` random bytes each, and ``extras`` each of pending messages, timers and parked
    addresses; returns its row counts."""
    from pystatefun.savepoints.format import MessageRow, ParkedRow, SavepointWriter, StateRow, TimerRow
    from pystatefun.wire.request_reply_pb2 import TypedValue

    rng = random.Random(seed)
    writer = SavepointWriter(path)
    batch = []
    for n in range(addresses):
        # a new message each time: one message set again and again keeps every value in its arena
        blob = TypedValue(typename="bench/blob", has_value=True, value=rng.randbytes(state_bytes))
        batch.append(StateRow(TYPENAME, f"account-{n}", "balance", blob.SerializeToString(), None))
        if len(batch) == 10_000:
            writer.write(batch)
            batch = []
    writer.write(batch)
    message = TypedValue(typename="bench/deposit", has_value=True, value=b"42").SerializeToString()
    due = int(time.time() * 1000) + 3_600_000
    writer.write(MessageRow(TYPENAME, f"account-{n}", None, None, message) for n in range(extras))
    writer.write(TimerRow(due + n, TYPENAME, f"account-{n}", TYPENAME, f"account-{n + 1}", f"token-{n}", message)
                 for n in range(extras))
    writer.write(ParkedRow(TYPENAME, f"account-{n}", "bench: parked") for n in range(0, addresses, max(1, addresses // extras)))
    manifest = writer.finish(application="bench", source_backend="embedded", partitions=partitions, mode="offline",
                             created_ms=int(time.time() * 1000))
    return manifest.counts


def _peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec, so a spawned
    child's would include its parent's size when it was started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(queue: typing.Any, function: typing.Callable[..., typing.Any], args: tuple) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    started = time.perf_counter()
    try:
        result = function(*args)
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        queue.put(("error", repr(e), 0.0, 0.0))
        raise
    usage = resource.getrusage(resource.RUSAGE_SELF)
    queue.put(("ok", (result, usage.ru_utime + usage.ru_stime), time.perf_counter() - started, _peak_rss_mib()))


def measured(function: typing.Callable[..., typing.Any], *args: typing.Any) -> tuple[typing.Any, float, float]:
    """``function(*args)`` in a spawned process: (its result, seconds, that process's peak RSS in MiB).
    ``function`` must be importable (a module-level function). The process's CPU seconds are in
    ``measured.cpu`` afterwards: CPU close to the seconds means Python is what bounds the step, far below
    them that it waits (for the broker or the disk)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, function, args))
    process.start()
    status, result, seconds, peak = queue.get()
    process.join()
    if status != "ok":
        raise RuntimeError(f"{function.__name__} failed: {result}")
    result, measured.cpu = result
    return result, seconds, peak


def kafka_restore(savepoint: str, bootstrap: str, app: str, partitions: int) -> dict[str, int]:
    from pystatefun.config.model import Module
    from pystatefun.savepoints import kafka

    return kafka.restore(savepoint, bootstrap, app, partitions, Module(path=Path("bench.yaml"))).counts


def bare_produce(bootstrap: str, topic: str, first: int, count: int, partitions: int) -> float:
    """The ceiling of a Kafka restore: ``count`` records shaped like a restore's state records (the same
    keys, values of the same size) produced in one transaction with the restore's producer settings, in
    a loop that does nothing else (no savepoint file, no checksum, no encoding). Returns the seconds."""
    from confluent_kafka import Producer

    from pystatefun.savepoints.kafka import _WRITE_SETTINGS

    value = random.Random(first).randbytes(STATE_BYTES + 10)
    keys = [f"s\x00{TYPENAME}\x00account-{n}\x00balance".encode() for n in range(first, first + count)]
    producer = Producer({"bootstrap.servers": bootstrap, **_WRITE_SETTINGS, "transactional.id": f"{topic}-{first}"})
    producer.init_transactions(60)
    started = time.perf_counter()
    producer.begin_transaction()
    for n, key in enumerate(keys):
        while True:
            try:
                producer.produce(topic, value, key, n % partitions)
                break
            except BufferError:
                producer.poll(0.05)
    producer.commit_transaction(120)
    return time.perf_counter() - started


def produce_ceiling(bootstrap: str, records: int, partitions: int, processes: int) -> float:
    """Records/s of ``processes`` bare_produce loops at once, ``records`` in all, into a new topic."""
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: a client dropped at once fails its requests
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(60)
    share = records // processes
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        seconds = pool.starmap(bare_produce, [(bootstrap, topic, n * share, share, partitions) for n in range(processes)])
    return share * processes / max(seconds)


def kafka_take(savepoint: str, bootstrap: str, app: str) -> dict[str, int]:
    from pystatefun.savepoints import kafka

    return kafka.take(savepoint, bootstrap, app).counts


def embedded_restore(savepoint: str, data_dir: str, partitions: int) -> dict[str, int]:
    from pystatefun.savepoints import embedded

    return embedded.restore(savepoint, Path(data_dir), partitions).counts


def embedded_take(savepoint: str, data_dir: str) -> dict[str, int]:
    from pystatefun.savepoints import embedded

    return embedded.take_offline(Path(data_dir), savepoint).counts


def same_rows(a: str, b: str, tables: typing.Iterable[str] = ("state", "messages", "parked")) -> bool:
    """Whether two savepoints hold the same rows of ``tables`` (in any order; timers get new ids)."""
    import itertools
    import sqlite3

    with sqlite3.connect(a) as x, sqlite3.connect(b) as y:
        for table in tables:
            query = f"SELECT * FROM {table} ORDER BY 1, 2, 3"
            missing = object()
            for one, other in itertools.zip_longest(x.execute(query), y.execute(query), fillvalue=missing):
                if one != other:
                    return False
    return True


def round_trip(backend: str, bootstrap: str | None, folder: Path, addresses: int, partitions: int) -> dict[str, float]:
    """Creates, restores into ``backend`` and takes back a savepoint of ``addresses`` addresses; prints
    and returns the numbers."""
    created = folder / f"created-{addresses}.savepoint"
    taken = folder / f"taken-{addresses}.savepoint"
    counts, seconds, peak = measured(make_savepoint, created, addresses)
    print(f"  {addresses:>10,} addresses: created in {seconds:6.1f} s ({addresses / seconds:,.0f}/s, peak RSS "
          f"{peak:,.0f} MiB), {created.stat().st_size / 2**20:,.0f} MiB, {sum(counts.values()):,} rows", flush=True)
    if backend == "kafka":
        app = f"bench-savepoints-{uuid.uuid4().hex[:8]}"
        restore, take = (kafka_restore, (str(created), bootstrap, app, partitions)), (kafka_take, (str(taken), bootstrap, app))
    else:
        data_dir = str(folder / f"data-{addresses}")
        restore, take = (embedded_restore, (str(created), data_dir, partitions)), (embedded_take, (str(taken), data_dir))
    _, restore_s, restore_peak = measured(restore[0], *restore[1])
    print(f"  {addresses:>10,} addresses: restored into {backend} ({partitions} partitions) in {restore_s:6.1f} s = "
          f"{addresses / restore_s:,.0f} addresses/s, peak RSS {restore_peak:,.0f} MiB, CPU {measured.cpu:.1f} s "
          f"({measured.cpu / restore_s:.0%} of a core)", flush=True)
    if backend == "kafka":  # what the broker takes from a Python client that does nothing but produce
        for processes in (1, 2):
            ceiling = produce_ceiling(bootstrap, addresses, partitions, processes)
            print(f"  {addresses:>10,} records: a bare produce loop in {processes} process(es) reaches {ceiling:,.0f} "
                  f"records/s; the restore is {addresses / restore_s / ceiling:.0%} of it", flush=True)
    _, take_s, take_peak = measured(take[0], *take[1])
    print(f"  {addresses:>10,} addresses: taken from {backend} in {take_s:6.1f} s = {addresses / take_s:,.0f} "
          f"addresses/s, peak RSS {take_peak:,.0f} MiB, CPU {measured.cpu:.1f} s ({measured.cpu / take_s:.0%} of a "
          f"core), {taken.stat().st_size / 2**20:,.0f} MiB", flush=True)
    if not same_rows(str(created), str(taken)):
        raise AssertionError("the savepoint taken back differs from the one restored")
    created.unlink()
    taken.unlink()
    if backend == "embedded":
        import shutil

        shutil.rmtree(folder / f"data-{addresses}")
    return {"restore_per_s": addresses / restore_s, "restore_mib": restore_peak,
            "take_per_s": addresses / take_s, "take_mib": take_peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", default="1000000", help="comma-separated sizes (default 1000000)")
    parser.add_argument("--partitions", type=int, default=8, help="of the application restored into")
    parser.add_argument("--backends", default="embedded,kafka", help="comma-separated (default embedded,kafka)")
    parser.add_argument("--dir", help="where the savepoint files go (default: a temporary directory)")
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    sizes = [int(size) for size in args.addresses.split(",")]
    backends = args.backends.split(",")
    from tests.support.kafka import BOOTSTRAP_ENV, KafkaCluster

    cluster = None
    bootstrap = os.environ.get(BOOTSTRAP_ENV)
    if not bootstrap and "kafka" in backends:
        cluster = KafkaCluster(nodes=1)
        cluster.start()
        bootstrap = cluster.bootstrap_servers
    print(f"savepoints: {STATE_BYTES} bytes of state per address; broker and processes on this machine")
    numbers: dict[str, dict[int, dict[str, float]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-savepoints-", dir=args.dir) as folder:
            for backend in backends:
                print(f"{backend} backend:")
                for size in sizes:
                    numbers.setdefault(backend, {})[size] = round_trip(backend, bootstrap, Path(folder), size,
                                                                       args.partitions)
    finally:
        if cluster is not None:
            cluster.stop()
    print("  target: >= 50,000 addresses/s each way; peak RSS that does not grow with the number of addresses")
    if args.record:
        runs = []
        for backend, by_size in numbers.items():
            largest = by_size[max(by_size)]
            name = {"kafka": "Kafka backend", "embedded": "embedded backend"}[backend]
            runs += [(f"{name}, restore", "addresses/s", round(largest["restore_per_s"])),
                     (f"{name}, take", "addresses/s", round(largest["take_per_s"])),
                     (f"{name}, restore", "peak RSS MiB", round(largest["restore_mib"])),
                     (f"{name}, take", "peak RSS MiB", round(largest["take_mib"]))]
        bench_results.record("savepoints", runs, args.note)


if __name__ == "__main__":
    main()
