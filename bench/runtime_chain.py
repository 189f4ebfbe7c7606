"""Messages per second of the runtime on a counter chain, with durable commits (embedded backend).

Each message increments a counter at its address and sends the next message to the next address of a
ring of addresses; many chains run at once. Two kinds of run in the same process and machine:

  (a) embedded: the function runs inside the runtime (module kind pystatefun.v1/embedded);
  (b) remote:   the same function served by our SDK (`pystatefun serve`) over HTTP.

each in two shapes: 100 chains spread over a ring of 1,000 addresses (most addresses idle, so every
call carries one message: the worst case for per-call costs), and 1,000 chains over a ring of 100
addresses (hot addresses: messages that arrive while their address is being called wait and go in
the next call, the batching StateFun's protocol is built for). The msgs/call column shows which
happened.

Each run goes through a real module.yaml, a fresh SQLite data dir with synchronous=FULL commits, and
checks afterwards that the counters add up to exactly the number of messages. The same run measures the
bare-loop floor of each shape (``bare_loop``: the same hops as plain Python) and prints every rate as a
ratio of it (issue 23's yardstick). Then a profile of (a) shows where the time goes. Run: ``.venv/bin/python bench/runtime_chain.py``; with ``--record`` the
messages/s printed are appended to docs/benchmarks/results.json and the charts redrawn (bench/results.py).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import os
import pstats
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pystatefun import IntType
from pystatefun.app import Application
from pystatefun.event_loop import run_event_loop
from pystatefun.config import load_module
from pystatefun.runtime.envelope import Envelope, address
from pystatefun.runtime.processor import Runtime
from pystatefun.sdk.messages import to_typed_value
from pystatefun.wire.types_pb2 import IntWrapper

import results as bench_results  # bench/results.py: --record

HERE = Path(__file__).parent
TARGETS = {"embedded": 50_000, "remote": 20_000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def module_yaml(folder: Path, kind: str, port: int | None) -> Path:
    if kind == "embedded":
        text = "kind: pystatefun.v1/embedded\nspec:\n  functions: bench/*\n  module: chain:functions\n"
    else:
        text = (
            "kind: io.statefun.endpoints.v2/http\nspec:\n  functions: bench/*\n"
            f"  urlPathTemplate: http://127.0.0.1:{port}/statefun\n  maxNumBatchRequests: 1000\n"
        )
    path = folder / f"{kind}.yaml"
    path.write_text(text)
    return path


SHAPES = [(100, 1000), (1000, 100)]  # (chains, ring size)


async def wait_until_idle(runtime: Runtime) -> None:
    """Returns once no message waits or runs anywhere in ``runtime`` (checked every 10 ms)."""
    while True:
        await asyncio.sleep(0.01)
        busy = runtime._ready or runtime._invocations or any(
            m.backlog or m.in_flight for p in runtime.processors.values() for m in p.mailboxes.values())
        if not busy:
            return


async def run_chain(module: Path, data_dir: Path, messages: int, chains: int, ring: int) -> tuple[float, float]:
    """Runs the chains to completion; returns the seconds it took (after startup, incl. the last commit)
    and the mean number of messages per function call (batch)."""
    app = Application(load_module(module), data_dir)
    await app.start()
    runtime = app.runtime
    hops = messages // chains
    start = time.perf_counter()
    for chain in range(chains):
        target = address("bench/counter", f"{ring}/{chain * ring // chains}")
        runtime.route(Envelope(target, None, to_typed_value(IntType, hops - 1)))
    await wait_until_idle(runtime)
    runtime.commit()
    elapsed = time.perf_counter() - start
    total = 0
    for i in range(ring):
        stored = app.store.load_state("bench/counter", f"{ring}/{i}").get("count")
        total += IntType.serializer().deserialize(stored.value.value) if stored else 0
    stats = runtime.stats["bench/counter"]
    batch = stats.messages_in / max(stats.batches, 1)
    await app.stop()
    if total != hops * chains:
        raise SystemExit(f"counters add up to {total}, expected {hops * chains}: the run is broken")
    return elapsed, batch


def serve_functions(port: int, python_options: tuple[str, ...] = ()) -> subprocess.Popen:
    """``pystatefun serve`` of bench/functions/chain.py on ``port``; ``python_options`` go before ``-m
    pystatefun.cli`` (bench/cost_model.py passes ``-c CODE`` to run it under a profiler)."""
    env = {**os.environ, "PYTHONPATH": str(HERE / "functions")}
    process = subprocess.Popen(
        [sys.executable, *python_options, "-m", "pystatefun.cli", "serve", "chain:functions", "--port", str(port), "--log-level", "warning"],
        cwd=HERE / "functions", env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the function server did not start")


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of process ``pid`` (Linux /proc)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_loop(messages: int, chains: int, ring: int, data_dir: Path, commit_interval: float = 0.1) -> tuple[float, float]:
    """The hop workload as plain Python, the floor the runtime is compared with: counters in a dict of
    protobuf-wrapped ints (IntWrapper bytes, as the runtime stores them), the messages (an address and an
    IntWrapper) in a deque, and every ``commit_interval`` seconds the changed counters written to SQLite
    (WAL, synchronous=FULL) in one transaction. Returns (seconds, CPU seconds of this process)."""
    db = sqlite3.connect(data_dir / "bare.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS state (id TEXT PRIMARY KEY, value BLOB)")
    hops = messages // chains
    cpu, start = cpu_seconds(), time.perf_counter()
    counters: dict[str, bytes] = {}
    dirty: dict[str, bytes] = {}
    queue: collections.deque[tuple[str, bytes]] = collections.deque(
        (f"{ring}/{chain * ring // chains}", IntWrapper(value=hops - 1).SerializeToString()) for chain in range(chains))
    last_commit = time.monotonic()
    while queue:
        target, body = queue.popleft()
        stored = counters.get(target)
        count = IntWrapper.FromString(stored).value if stored is not None else 0
        value = IntWrapper(value=count + 1).SerializeToString()
        counters[target] = dirty[target] = value
        hops_left = IntWrapper.FromString(body).value
        if hops_left > 0:
            ring_text, position = target.split("/")
            queue.append((f"{ring_text}/{(int(position) + 1) % int(ring_text)}",
                          IntWrapper(value=hops_left - 1).SerializeToString()))
        if time.monotonic() - last_commit >= commit_interval or not queue:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", dirty.items())
            db.execute("COMMIT")
            dirty.clear()
            last_commit = time.monotonic()
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    db.close()
    total = sum(IntWrapper.FromString(v).value for v in counters.values())
    if total != hops * chains:
        raise SystemExit(f"bare loop: counters add up to {total}, expected {hops * chains}")
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--remote-messages", type=int, default=100_000)
    parser.add_argument("--floor-messages", type=int, default=400_000, help="messages of the bare-loop floor")
    parser.add_argument("--no-profile", action="store_true")
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "chain.py").write_text((HERE / "functions" / "chain.py").read_text())
        port = free_port()
        server = serve_functions(port)
        try:
            for chains, ring in SHAPES:
                for kind, messages in (("embedded", args.messages), ("remote", args.remote_messages)):
                    data = folder / f"{kind}-{chains}-{ring}"
                    module = module_yaml(folder, kind, port)
                    cpu, server_cpu = cpu_seconds(), cpu_seconds(server.pid)
                    seconds, batch = run_event_loop(run_chain(module, data, messages, chains, ring))
                    cpu, server_cpu = cpu_seconds() - cpu, cpu_seconds(server.pid) - server_cpu
                    rows.append((kind, chains, ring, messages, seconds, batch, cpu, server_cpu))
        finally:
            server.terminate()
            server.wait(10)
        # the same workload as plain Python, in the same run: the floor the rates are compared with
        floors = {(chains, ring): args.floor_messages / bare_loop(args.floor_messages, chains, ring, folder)[0]
                  for chains, ring in SHAPES}
        print("counter chain, durable commits (SQLite, synchronous=FULL), commit interval 100 ms; "
              "remote = our SDK behind `pystatefun serve` on this machine")
        print("CPU us/msg: CPU time per message of the runtime process and of the function server process")
        print(f"{'run':9} {'chains':>6} {'ring':>5} {'messages':>9} {'seconds':>8} {'msg/s':>9} {'msgs/call':>9} "
              f"{'CPU us/msg':>17} {'of floor':>8}  target")
        runs = []  # for --record: the messages/s printed, named as in results.json
        for kind, chains, ring, messages, seconds, batch, cpu, server_cpu in rows:
            rate = messages / seconds
            verdict = "met" if rate >= TARGETS[kind] else "missed"
            cpu_text = f"{1e6 * cpu / messages:5.1f} + {1e6 * server_cpu / messages:5.1f}"
            print(f"{kind:9} {chains:6} {ring:5} {messages:9,} {seconds:8.2f} {rate:9,.0f} {batch:9.2f} "
                  f"{cpu_text:>17} {rate / floors[chains, ring]:8.3f}  >= {TARGETS[kind]:,} {verdict}")
            runs.append(("pystatefun", f"messages/s, {kind}, {chains:,} chains over {ring:,} addresses", round(rate)))
        for (chains, ring), floor in floors.items():
            print(f"{'floor':9} {chains:6} {ring:5} {args.floor_messages:9,} {args.floor_messages / floor:8.2f} "
                  f"{floor:9,.0f}  (bare_loop: the same hops as plain Python, a dict, a deque, SQLite commits)")
        if not args.no_profile:
            profile(folder, args.messages // 2, *SHAPES[0])
    if args.record:
        bench_results.record("runtime_chain", runs, args.note)


def profile(folder: Path, messages: int, chains: int, ring: int) -> None:
    """Where the embedded run's time goes, by layer."""
    profiler = cProfile.Profile()
    profiler.enable()
    run_event_loop(run_chain(module_yaml(folder, "embedded", None), folder / "profiled", messages, chains, ring))
    profiler.disable()
    stats = pstats.Stats(profiler)
    layers: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():
        layer = _layer(filename)
        layers[layer] = layers.get(layer, 0.0) + tottime
    total = sum(layers.values())
    print(f"\nwhere the time of an embedded run with {chains} chains over {ring} addresses goes (cProfile, own time by layer):")
    for layer, seconds in sorted(layers.items(), key=lambda kv: -kv[1]):
        print(f"  {layer:28} {100 * seconds / total:5.1f}%")


def _layer(filename: str) -> str:
    for part in ("runtime", "backends", "sdk", "io", "serving"):
        if f"pystatefun/{part}/" in filename:
            return f"pystatefun/{part}"
    if filename.endswith("chain.py"):
        return "the function itself"
    if "asyncio" in filename or "selectors" in filename:
        return "asyncio"
    if filename == "~":
        return "builtins (sqlite3, protobuf, ...)"
    return "other"


if __name__ == "__main__":
    main()
