"""Records/s through a Kinesis ingress -> keyed counter -> Kinesis egress, on both backends, against a
local Kinesis emulator, with Kafka IO's figure and the emulator's own ceiling from the same run.

  Kinesis IO, embedded       `pystatefun run module.yaml --data-dir ...`: a Kinesis ingress (startupPosition
                             earliest) reads a stream filled beforehand, the counter (tests/kinesis/apps/
                             counter.py: each record counts its key and writes the new count) runs inside the
                             runtime, a Kinesis egress puts the counts on a second stream;
  Kinesis IO, Kafka backend  the same module with ``--backend kafka --workers 1`` (and 2): positions commit in
                             the epochs' transactions, counts go through ``<app>.kinesis-egress`` before they
                             are put (backends/kafka/kinesis.py);
  Kafka IO, embedded         the same counter between a Kafka ingress and a Kafka egress (at-least-once, the
                             default; the Kinesis egress is at-least-once towards Kinesis too), embedded
                             backend: the runtime's rate when Kinesis is not in the way;
  emulator, bare             no pystatefun: botocore reads a stream filled as the flows' are with GetRecords
                             (10,000 a call, shard after shard), then puts a count per record on another
                             stream with PutRecords (500 a call, 4 calls in flight). The ratio of a flow's rate
                             to this one says whether pystatefun or the emulator limits it. Printed beside it:
                             PutRecords with one call in flight (as pystatefun's egress puts: a batch at a
                             time), and the emulator's records per CPU second (its rate with a whole core).

Every flow moves the same records: ``--records`` (40,000) over ``--keys`` (1,000) partition keys, on
``--shards`` (4) shards or partitions, written before the runtime starts. The rate is records / the time
from the ingress's start of reading (its shard readers started, as /health says; for Kafka IO its first
record taken) to the last record out (``kinesis_egresses.*.records_put``, ``kafka_egresses.*.forwarded``
in /health, polled every 20 ms); beside it the rate from the process's start (Python start-up, module
load, a Kafka worker's group join), when the ingress had taken every record and when the first and last
records came out, and the CPU the emulator and pystatefun used meanwhile (from /proc; a process near
1.00 core is the one that limits on this 2-core machine). After each flow the output is read back and
checked: every key's counts are 1..n, once each.

A stream filled beforehand is read in a few GetRecords calls of 10,000 records (``--get-limit``), so the
phases barely overlap: reading (the emulator), then counting and committing (pystatefun), then putting
(one PutRecords in flight); a stream written while it is read would overlap them.

The emulator is kinesalite (``--emulator kinesalite``, the default; Node.js, installed from npm by
scripts/kinesalite) or moto's server (``--emulator moto``), started here on a free port
(tests/support/kinesis.py). Kafka is the broker of ``--bootstrap`` or $PYSTATEFUN_KAFKA_BOOTSTRAP, else
one started here (tests/support/kafka.py, as scripts/kafka start) and stopped at the end. moto's server loses a
few records when PutRecords calls to one stream overlap (it answers that it took them): two workers put
at once, so with moto their check fails now and then. Neither emulator throttles: real Kinesis takes at most 1,000 records/s per shard (4,000/s on 4 shards) and 5 GetRecords
calls/s per shard. Run: ``.venv/bin/python bench/kinesis_io.py [--emulator moto]`` (about a minute and a
half); with ``--record`` the rates are appended to docs/benchmarks/results.json and the charts redrawn
(bench/results.py), unless a check failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import results as bench_results  # bench/results.py: --record

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.append(str(ROOT / "tests"))  # after the installed packages: tests/packaging must not hide packaging
from e2e import processes  # noqa: E402  (free_port)
from support.kafka import BOOTSTRAP_ENV, KafkaCluster  # noqa: E402
from support.kinesis import EMULATORS  # noqa: E402

COUNTER = ROOT / "tests" / "kinesis" / "apps" / "counter.py"
KINESIS_EGRESS = "kc/kinesis-out"  # the counter sends to a Kinesis egress when the typename starts with kc/kinesis
KAFKA_EGRESS = "kc/kafka-out"
POLL_SECONDS = 0.02
PUT_THREADS = 4  # PutRecords calls in flight in the bare loop
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- CPU of processes, from /proc --------------------------------------------------------------------------

def _stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used) of every process."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return stats


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its descendants that are alive (``pystatefun run
    --workers 2`` runs its workers as children; scripts/kinesalite's launcher runs node)."""
    stats = _stats()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in stats.items():
        children.setdefault(parent, []).append(child)
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        if current in stats:
            total += stats[current][1]
            pending.extend(children.get(current, ()))
    return total


# -- the flows ---------------------------------------------------------------------------------------------

@dataclass
class Flow:
    """What one flow measured; times in seconds from the moment the ingress began to read."""

    name: str
    steady: float  # records/s, from the ingress's start of reading to the last record out
    whole: float  # records/s, from the process's start to the last record out
    seconds: float  # from the ingress's start of reading to the last record out
    first_out: float  # to the first record out
    ingress_done: float  # to the last record the ingress took
    emulator_cpu: float | None  # cores (CPU seconds / seconds) over ``seconds``
    pystatefun_cpu: float
    checked: str  # what the check of the output found: "ok" or the problem


def health(ports: list[int]) -> list[dict]:
    answers = []
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            answers.append(json.loads(answer.read()))
    return answers


def kinesis_progress(answers: list[dict]) -> tuple[bool, int, int]:
    """(whether a Kinesis ingress reads its shards, records they took, records the Kinesis egresses put),
    over the workers. A shard is being read from the moment its reader starts (before its first
    GetRecords): on the Kafka backend once the stream's partition is assigned."""
    ingresses = [ingress for answer in answers for ingress in answer.get("kinesis_ingresses", {}).values()]
    reading = any(stream["shards_reading"] or stream["shards_finished"]
                  for ingress in ingresses for stream in ingress["streams"].values())
    put = sum(egress["records_put"] for answer in answers for egress in answer.get("kinesis_egresses", {}).values())
    return reading, sum(ingress["records"] for ingress in ingresses), put


def kafka_progress(answers: list[dict]) -> tuple[bool, int, int]:
    """(whether the Kafka ingresses took a record, records they took, records the Kafka egresses produced)."""
    taken = sum(ingress["records"] for answer in answers for ingress in answer.get("kafka_ingresses", {}).values())
    out = sum(egress["forwarded"] for answer in answers for egress in answer.get("kafka_egresses", {}).values())
    return taken > 0, taken, out


def run_flow(name: str, command: list[str], folder: Path, admin_ports: list[int], records: int,
             progress, emulator_pid: int | None, check, timeout: float) -> Flow:
    """Starts ``command`` in ``folder`` and polls its /health (``progress(answers)``) until ``records``
    records are out; then stops it and checks the output with ``check()``."""
    log = open(folder / "runtime.log", "wb")
    started = time.time()
    process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        began = first_out = ingress_done = None
        cpu_at_start = (0.0, 0.0)
        deadline = time.monotonic() + timeout
        out = 0
        while out < records:
            if process.poll() is not None:
                raise SystemExit(f"{name}: pystatefun exited with {process.returncode}:\n"
                                 f"{(folder / 'runtime.log').read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: only {out} of {records} records out after {timeout:.0f} s")
            try:
                reading, taken, out = progress(health(admin_ports))
            except OSError:  # not listening yet
                reading, taken, out = False, 0, 0
            now = time.time()
            if (reading or out) and began is None:
                began = now
                cpu_at_start = (cpu_seconds(emulator_pid) if emulator_pid else 0.0, cpu_seconds(process.pid))
            if out and first_out is None:
                first_out = now
            if taken >= records and ingress_done is None:
                ingress_done = now
            if out < records:
                time.sleep(POLL_SECONDS)
        last_out = time.time()
        emulator_cpu = cpu_seconds(emulator_pid) - cpu_at_start[0] if emulator_pid else None
        pystatefun_cpu = cpu_seconds(process.pid) - cpu_at_start[1]
        found = checked(check)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        log.close()
    seconds = last_out - began
    return Flow(name, records / seconds, records / (last_out - started), seconds, first_out - began,
                (ingress_done or last_out) - began, None if emulator_cpu is None else emulator_cpu / seconds,
                pystatefun_cpu / seconds, found)


def write_module(folder: Path, ingress: str, egress: str) -> Path:
    shutil.copy(COUNTER, folder / "counter.py")
    module = folder / "module.yaml"
    module.write_text("kind: pystatefun.v1/embedded\nspec:\n  functions: kc/*\n  module: counter:functions\n---\n"
                      f"{ingress}---\n{egress}")
    return module


def aws(endpoint: str) -> str:
    return ("  awsRegion:\n    type: custom-endpoint\n    endpoint: " + endpoint + "\n    id: us-east-1\n"
            "  awsCredentials:\n    type: basic\n    accessKeyId: testing\n    secretAccessKey: testing\n")


def kinesis_module(folder: Path, endpoint: str, source: str, max_records: int = 10_000) -> Path:
    ingress = ("kind: io.statefun.kinesis.v1/ingress\nspec:\n  id: kc/in\n" + aws(endpoint)
               + "  startupPosition:\n    type: earliest\n  streams:\n"
               f"    - stream: {source}\n      valueType: kc/record\n      targets: [kc/counter]\n"
               "  clientConfigProperties:\n    - flink.shard.getrecords.intervalmillis: 50\n"
               f"    - flink.shard.getrecords.maxrecordcount: {max_records}\n")
    egress = f"kind: io.statefun.kinesis.v1/egress\nspec:\n  id: {KINESIS_EGRESS}\n" + aws(endpoint)
    return write_module(folder, ingress, egress)


def fill_kinesis(emulator, stream: str, out: str, records: int, keys: int) -> float:
    """Puts the input records (``<egress> <out stream>``, keyed k0..k<keys-1>); returns PutRecords' rate."""
    started = time.monotonic()
    emulator.put(stream, [(f"k{n % keys}", f"{KINESIS_EGRESS} {out}".encode()) for n in range(records)])
    return records / (time.monotonic() - started)


def check_counts(values: list[tuple[str, str]], records: int, keys: int) -> str | None:
    """None when ``values`` ((key, count) as read back) hold every key's counts 1..n, and nothing else;
    else what is missing or wrong. A record put twice (the egresses are at-least-once towards the
    emulator and Kafka: a batch in flight at a hand-over is put again) is only counted."""
    expected = {(f"k{k}", str(n)) for k in range(keys) for n in range(1, records // keys + (1 if k < records % keys else 0) + 1)}
    seen = set(values)
    missing, extra = expected - seen, seen - expected
    if missing or extra:
        return (f"{len(values)} records out, {len(missing)} counts missing (e.g. {sorted(missing)[:3]}), {len(extra)} "
                f"unexpected (e.g. {sorted(extra)[:3]})")
    return None if len(values) == len(seen) else f"ok, {len(values) - len(seen)} put twice"


def check_kinesis(emulator, stream: str, records: int, keys: int):
    return lambda: check_counts([(r["partition_key"], r["data"].decode()) for r in emulator.read_all(stream)],
                                records, keys)


def checked(check, seconds: float = 20.0) -> str:
    """"ok" (or "ok, n put twice") once ``check()`` finds every count out, else its last finding after
    ``seconds``: called while the runtime still runs, since a record put again at a hand-over is counted
    in /health too, so that the counters can reach the total before the last records are out."""
    deadline = time.monotonic() + seconds
    while True:
        problem = check()
        if problem is None or problem.startswith("ok"):
            return problem or "ok"
        if time.monotonic() > deadline:
            return problem
        time.sleep(1)


def kinesis_flow(name: str, emulator, args, backend: list[str], workers: int) -> Flow:
    """One Kinesis -> counter -> Kinesis flow."""
    source, out = unique("in"), unique("out")
    emulator.create_stream(source, args.shards)
    emulator.create_stream(out, args.shards)
    fill_kinesis(emulator, source, out, args.records, args.keys)
    folder = Path(tempfile.mkdtemp(prefix="bench-kinesis-", dir=args.dir))
    kinesis_module(folder, emulator.endpoint, source, args.get_limit)
    admin = processes.free_port(workers)
    command = [sys.executable, "-m", "pystatefun.cli", "run", "module.yaml", "--admin-port", str(admin),
               "--log-level", "warning", *backend]
    flow = run_flow(name, command, folder, [admin + i for i in range(workers)], args.records, kinesis_progress,
                    emulator.process.pid, check_kinesis(emulator, out, args.records, args.keys), args.timeout)
    return flow


def kafka_io_flow(bootstrap: str, args) -> Flow:
    from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
    from confluent_kafka.admin import AdminClient, NewTopic

    from pystatefun.io.kafka import consume_batch

    source, out = unique("in"), unique("out")
    admin_client = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin_client.create_topics([NewTopic(t, args.shards) for t in (source, out)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for n in range(args.records):
        while True:
            try:
                producer.produce(source, f"{KAFKA_EGRESS} {out}".encode(), f"k{n % args.keys}".encode())
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)
    folder = Path(tempfile.mkdtemp(prefix="bench-kafka-io-", dir=args.dir))
    ingress = (f"kind: io.statefun.kafka.v1/ingress\nspec:\n  id: kc/in\n  address: {bootstrap}\n"
               f"  consumerGroupId: {unique('kc')}\n  startupPosition:\n    type: earliest\n  topics:\n"
               f"    - topic: {source}\n      valueType: kc/record\n      targets: [kc/counter]\n")
    egress = f"kind: io.statefun.kafka.v1/egress\nspec:\n  id: {KAFKA_EGRESS}\n  address: {bootstrap}\n"
    write_module(folder, ingress, egress)
    admin = processes.free_port()

    def check() -> str | None:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("check"), "enable.auto.commit": False})
        consumer.assign([TopicPartition(out, p, OFFSET_BEGINNING) for p in range(args.shards)])
        values: list[tuple[str, str]] = []
        deadline = time.monotonic() + 20
        while len(values) < args.records and time.monotonic() < deadline:  # at least once: more may come
            values += [(r.key().decode(), r.value().decode()) for r in consume_batch(consumer, 10_000, 0.5)
                       if r.error() is None]
        consumer.close()
        return check_counts(values, args.records, args.keys)

    command = [sys.executable, "-m", "pystatefun.cli", "run", "module.yaml", "--data-dir", "data", "--admin-port",
               str(admin), "--log-level", "warning"]
    return run_flow("Kafka IO, embedded", command, folder, [admin], args.records, kafka_progress, None, check,
                    args.timeout)


def bare(emulator, args) -> dict[str, float]:
    """No pystatefun: reads a stream filled as the flows' are with GetRecords (10,000 a call, shard after
    shard), then puts a count per record on another stream with PutRecords (500 a call, PUT_THREADS calls
    in flight), through botocore as pystatefun does. Returns records/s: ``copy`` (the whole), ``get`` and
    ``put`` (each part), ``put_serial`` (the fill: one PutRecords in flight, as an egress of pystatefun puts),
    and ``cores``, the emulator's CPU in cores during the copy, and ``capacity``, records / its CPU
    seconds: how fast it would copy with a whole core busy."""
    source, out = unique("bare-in"), unique("bare-out")
    emulator.create_stream(source, args.shards)
    emulator.create_stream(out, args.shards)
    put_serial = fill_kinesis(emulator, source, out, args.records, args.keys)
    shards = [shard["ShardId"] for shard in emulator.shards(source)]
    clients = [emulator.client(read_timeout=60) for _ in range(PUT_THREADS)]
    cpu = cpu_seconds(emulator.process.pid)
    started = time.monotonic()
    found: list[dict] = []
    for shard in shards:
        iterator = clients[0].get_shard_iterator(StreamName=source, ShardId=shard,
                                                 ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator is not None:
            page = clients[0].get_records(ShardIterator=iterator, Limit=10_000)
            found += page["Records"]
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    read_at = time.monotonic()
    if len(found) != args.records:
        raise SystemExit(f"the bare loop read {len(found)} records of {args.records}")
    batches = [[{"PartitionKey": r["PartitionKey"], "Data": str(start + i).encode()}
                for i, r in enumerate(found[start:start + 500])] for start in range(0, len(found), 500)]

    def put(thread: int) -> None:
        for batch in batches[thread::PUT_THREADS]:
            answer = clients[thread].put_records(StreamName=out, Records=batch)
            if answer.get("FailedRecordCount"):
                raise SystemExit(f"the emulator refused {answer['FailedRecordCount']} records")

    with concurrent.futures.ThreadPoolExecutor(PUT_THREADS) as threads:
        list(threads.map(put, range(PUT_THREADS)))
    ended = time.monotonic()
    cpu = cpu_seconds(emulator.process.pid) - cpu
    return {"copy": args.records / (ended - started), "get": args.records / (read_at - started),
            "put": args.records / (ended - read_at), "put_serial": put_serial, "cores": cpu / (ended - started),
            "capacity": args.records / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulator", choices=["kinesalite", "moto"], default="kinesalite")
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--shards", type=int, default=4, help="shards of each stream, partitions of each topic")
    parser.add_argument("--workers", default="1,2", help="Kafka backend worker counts to run (comma-separated)")
    parser.add_argument("--bootstrap", help="a Kafka broker to use (else $PYSTATEFUN_KAFKA_BOOTSTRAP, else one "
                                            "started here)")
    parser.add_argument("--skip-kafka", action="store_true", help="the embedded Kinesis flow and the bare loop only")
    parser.add_argument("--get-limit", type=int, default=10_000,
                        help="the ingress's flink.shard.getrecords.maxrecordcount (Flink's default: 10,000)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a flow may take")
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w]

    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    work = Path(tempfile.mkdtemp(prefix="bench-kinesis-io-"))
    args.dir = str(work)
    flows: list[Flow] = []
    try:
        with ExitStack() as stack:
            emulator = stack.enter_context(EMULATORS[args.emulator](work / "emulator"))
            ceiling = bare(emulator, args)
            flows.append(kinesis_flow("Kinesis IO, embedded", emulator, args, ["--data-dir", "data"], 1))
            if not args.skip_kafka:
                bootstrap = args.bootstrap or os.environ.get(BOOTSTRAP_ENV)
                if not bootstrap:
                    cluster = KafkaCluster(nodes=1, workdir=work / "kafka")
                    cluster.start()
                    stack.callback(cluster.stop)
                    bootstrap = cluster.bootstrap_servers
                for n in workers:
                    flows.append(kinesis_flow(
                        f"Kinesis IO, Kafka backend, {n} worker{'s' if n > 1 else ''}", emulator, args,
                        ["--backend", "kafka", "--bootstrap-servers", bootstrap, "--app", unique("kbench"),
                         "--workers", str(n)], n))
                flows.append(kafka_io_flow(bootstrap, args))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"Kinesis IO: keyed counter, {args.records:,} records over {args.keys:,} keys, {args.shards} shards "
          f"(Kafka: partitions), all processes on this machine")
    print(f"  emulator: {args.emulator} (Kinesis emulated on 127.0.0.1; no throttling)")
    print(f"  emulator, bare (no pystatefun; botocore; GetRecords 10,000 a call, then PutRecords 500 a call, "
          f"{PUT_THREADS} in flight): {ceiling['copy']:,.0f} records/s ({args.emulator} {ceiling['cores']:.2f} cores; "
          f"GetRecords {ceiling['get']:,.0f}/s, PutRecords {ceiling['put']:,.0f}/s)")
    print(f"    PutRecords with 1 call in flight (the fills; as a pystatefun egress puts): {ceiling['put_serial']:,.0f} "
          f"records/s; {args.emulator} with a whole core busy (records / its CPU seconds): {ceiling['capacity']:,.0f}")
    kafka_io = next((flow for flow in flows if flow.name.startswith("Kafka IO")), None)
    print("  records/s from the ingress's start of reading to the last record out / from the process's start;")
    print("  (times in s from the start of reading; out: first record out to last; CPU over the whole time, in cores)")
    for flow in flows:
        cpu = f"pystatefun {flow.pystatefun_cpu:.2f}"
        if flow.emulator_cpu is not None:
            cpu = f"{args.emulator} {flow.emulator_cpu:.2f}, " + cpu
        ratios = "" if flow is kafka_io else f"  {flow.steady / ceiling['copy']:.2f}x bare"
        if kafka_io is not None and flow is not kafka_io:
            ratios += f", {flow.steady / kafka_io.steady:.2f}x Kafka IO"
        out_rate = args.records / (flow.seconds - flow.first_out) if flow.seconds > flow.first_out else float("nan")
        print(f"  {flow.name:<37} {flow.steady:7,.0f} / {flow.whole:6,.0f}  (all in {flow.ingress_done:.1f}, first out "
              f"{flow.first_out:.1f}, last out {flow.seconds:.1f}: out {out_rate:,.0f}/s; {cpu}){ratios}"
              f"{'' if flow.checked == 'ok' else '  ' + flow.checked if flow.checked.startswith('ok') else '  CHECK FAILED: ' + flow.checked}")
        if not flow.checked.startswith("ok") and args.emulator == "moto" and "2 workers" in flow.name:
            print("    (moto's server loses records when PutRecords calls to one stream overlap, and answers that it "
                  "took them: 146 of 20,000 with 4 threads, none with 1; two workers put at once)")
    if args.record:
        if any(not flow.checked.startswith("ok") for flow in flows):
            raise SystemExit("a check failed: nothing recorded")
        runs = [(flow.name, "records/s", round(flow.steady)) for flow in flows]
        runs.append((f"{args.emulator}, bare GetRecords+PutRecords", "records/s", round(ceiling["copy"])))
        bench_results.record("kinesis_io", runs, args.note)


if __name__ == "__main__":
    main()
