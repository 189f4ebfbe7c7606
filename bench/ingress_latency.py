"""Latency of the embedded runtime through its HTTP interfaces (`pystatefun run`, durable commits):

  (a) ingress -> egress: messages PUT to the playground ingress at a steady rate (default 1,000/s),
      each passed by an embedded function to the playground egress; the time from sending the PUT to
      the record's arrival at a long-polling reader, p50 / p99 (and of the 202 itself). Twice: through
      a function without state, and through one that writes state for every message (so that every
      epoch has something to fsync), with the number of commits that wrote to disk;
  (b) request/reply: PUT ?wait=5 answered by the function's reply, round trip p50 / p99, with 1 and
      with 8 concurrent clients.

The clients run in this process (aiohttp on uvloop), the runtime in another, on the same machine.
Run: ``.venv/bin/python bench/ingress_latency.py``; with ``--record`` the p50s of (a) are appended to
docs/benchmarks/results.json and the charts redrawn (bench/results.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import uvloop

from pystatefun import StringType

import results as bench_results  # bench/results.py: --record

HERE = Path(__file__).parent
STRING = "application/vnd.io.statefun.types/string"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def start_runtime(folder: Path) -> tuple[subprocess.Popen, int, int, int]:
    ingress, egress, admin = free_port(), free_port(), free_port()
    shutil.copy(HERE / "functions" / "echo.py", folder / "echo.py")
    (folder / "module.yaml").write_text(
        "kind: pystatefun.v1/embedded\nspec:\n  functions: bench/*\n  module: echo:functions\n---\n"
        f"kind: io.statefun.playground.v1/ingress\nspec:\n  port: {ingress}\n---\n"
        f"kind: io.statefun.playground.v1/egress\nspec:\n  port: {egress}\n  topics: [out]\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pystatefun.cli", "run", str(folder / "module.yaml"), "--data-dir", str(folder / "data"),
         "--admin-port", str(admin), "--log-level", "warning"], start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", egress), timeout=0.2).close()
            return process, ingress, egress, admin
        except OSError:
            time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    raise SystemExit("the runtime did not start")


def commits_on_disk(admin: int) -> int:
    """Epochs the runtime has written to disk so far (each one transaction and fsync), from /metrics."""
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read().decode()
    for line in metrics.splitlines():
        if line.startswith("pystatefun_epoch_commit_latency_seconds_count"):
            return int(float(line.split()[-1]))
    raise SystemExit("the runtime's /metrics has no pystatefun_epoch_commit_latency_seconds_count")


async def ingress_to_egress(ingress: int, egress: int, function: str, rate: int, seconds: float) -> dict[str, float]:
    sent: dict[str, float] = {}
    acks: list[float] = []
    arrivals: list[float] = []
    total = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def send(n: int) -> None:
            body = StringType.serializer().serialize(str(n))
            started = time.perf_counter()
            sent[str(n)] = started
            async with session.put(f"http://127.0.0.1:{ingress}/bench/{function}/k{n % 100}", data=body,
                                   headers={"Content-Type": STRING}) as reply:
                assert reply.status == 202, await reply.text()
            acks.append(time.perf_counter() - started)

        async def read() -> None:
            while len(arrivals) < total:
                async with session.get(f"http://127.0.0.1:{egress}/out?wait=2") as reply:
                    if reply.status == 200:
                        record = (await reply.read()).decode()
                        arrivals.append(time.perf_counter() - sent[record])

        readers = [asyncio.ensure_future(read()) for _ in range(16)]
        senders = []
        start = time.perf_counter()
        for n in range(total):  # a steady rate: each PUT at its own time, whatever the others do
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            senders.append(asyncio.ensure_future(send(n)))
        await asyncio.gather(*senders)
        achieved = total / (time.perf_counter() - start)
        await asyncio.wait_for(asyncio.gather(*readers), 30)
    return {"rate": achieved, "ack_p50": percentile(acks, 50), "ack_p99": percentile(acks, 99),
            "p50": percentile(arrivals, 50), "p99": percentile(arrivals, 99), "count": len(arrivals)}


async def request_reply(ingress: int, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        async def client(c: int) -> None:
            end = time.perf_counter() + seconds
            n = 0
            while time.perf_counter() < end:
                body = StringType.serializer().serialize(f"{c}-{n}")
                started = time.perf_counter()
                async with session.put(f"http://127.0.0.1:{ingress}/bench/echo/c{c}?wait=5", data=body,
                                       headers={"Content-Type": STRING}) as reply:
                    answer = await reply.read()
                    assert reply.status == 200 and StringType.serializer().deserialize(answer) == f"{c}-{n}"
                latencies.append(time.perf_counter() - started)
                n += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.perf_counter() - started
    return {"rate": len(latencies) / elapsed, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, ingress, egress, admin = start_runtime(Path(tmp))
        try:
            flows = []
            for function in ("echo", "tally"):
                commits = commits_on_disk(admin)
                flow = uvloop.run(ingress_to_egress(ingress, egress, function, args.rate, args.seconds))
                flows.append((function, flow, commits_on_disk(admin) - commits))
            replies = [(c, uvloop.run(request_reply(ingress, c, args.seconds / 2))) for c in (1, 8)]
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(15)
    ms = 1000
    print("embedded runtime, durable commits (SQLite, synchronous=FULL), clients in another process")
    for function, flow, commits in flows:
        print(f"(a) ingress -> egress through {'a function without state' if function == 'echo' else 'a state write'}, "
              f"at {flow['rate']:,.0f} messages/s ({flow['count']:,} messages, {commits:,} commits to disk): "
              f"p50 {flow['p50'] * ms:.2f} ms, p99 {flow['p99'] * ms:.2f} ms  (target p50 <= 5 ms); "
              f"the 202 itself: p50 {flow['ack_p50'] * ms:.2f} ms, p99 {flow['ack_p99'] * ms:.2f} ms")
    for clients, r in replies:
        print(f"(b) request/reply, {clients} client{'s' if clients > 1 else ''}: {r['rate']:,.0f} requests/s, "
              f"p50 {r['p50'] * ms:.2f} ms, p99 {r['p99'] * ms:.2f} ms")
    if args.record:  # the numbers printed that results.json has kept, under its names
        systems = {"echo": "pystatefun, no state", "tally": "pystatefun, a state write per message"}
        bench_results.record("ingress_latency", [
            (systems[function], f"p50 ms, ingress to egress at {args.rate:,} messages/s", round(flow["p50"] * ms, 2))
            for function, flow, _ in flows], args.note)


if __name__ == "__main__":
    main()
