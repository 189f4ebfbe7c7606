"""Messages per second of the runtime on a counter chain, with durable commits (embedded backend).

Each message increments a counter at its address and sends the next message to the next address of a
ring of 1,000 addresses; ``--chains`` chains run at once. Two runs in the same process and machine:

  (a) embedded: the function runs inside the runtime (module kind pystatefun.v1/embedded);
  (b) remote:   the same function served by our SDK (`pystatefun serve`, uvicorn) over HTTP.

Each run goes through a real module.yaml, a fresh SQLite data dir with synchronous=FULL commits, and
checks afterwards that the counters add up to exactly the number of messages. Then a profile of (a)
shows where the time goes. Run: ``.venv/bin/python bench/runtime_chain.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pystatefun import IntType
from pystatefun.app import Application, run_event_loop
from pystatefun.config import load_module
from pystatefun.runtime.envelope import Envelope, address
from pystatefun.sdk.messages import to_typed_value

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


async def run_chain(module: Path, data_dir: Path, messages: int, chains: int) -> float:
    """Runs the chains to completion; returns the seconds it took (after startup, incl. the last commit)."""
    app = Application(load_module(module), data_dir)
    await app.start()
    runtime = app.runtime
    hops = messages // chains
    start = time.perf_counter()
    for chain in range(chains):
        target = address("bench/counter", str(chain * (1000 // chains)))
        runtime.route(Envelope(target, None, to_typed_value(IntType, hops - 1)))
    while True:
        await asyncio.sleep(0.01)
        busy = runtime._ready or runtime._invocations or any(p.mailboxes for p in runtime.processors.values())
        if not busy:
            break
    runtime.commit()
    elapsed = time.perf_counter() - start
    total = 0
    for i in range(1000):
        stored = app.store.load_state("bench/counter", str(i)).get("count")
        total += IntType.serializer().deserialize(stored.value.value) if stored else 0
    await app.stop()
    if total != hops * chains:
        raise SystemExit(f"counters add up to {total}, expected {hops * chains}: the run is broken")
    return elapsed


def serve_functions(port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(HERE / "functions")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pystatefun.cli", "serve", "chain:functions", "--port", str(port), "--log-level", "warning"],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument("--remote-messages", type=int, default=100_000)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE / "functions"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "chain.py").write_text((HERE / "functions" / "chain.py").read_text())
        seconds = run_event_loop(run_chain(module_yaml(folder, "embedded", None), folder / "a", args.messages, args.chains))
        results["embedded"] = (args.messages, seconds)
        port = free_port()
        server = serve_functions(port)
        try:
            seconds = run_event_loop(run_chain(module_yaml(folder, "remote", port), folder / "b", args.remote_messages, args.chains))
            results["remote"] = (args.remote_messages, seconds)
        finally:
            server.terminate()
            server.wait(10)
        print(f"counter chain, {args.chains} chains over a ring of 1,000 addresses, durable commits (SQLite, synchronous=FULL)")
        print(f"{'run':10} {'messages':>9} {'seconds':>8} {'msg/s':>9}  target")
        for name, (count, secs) in results.items():
            rate = count / secs
            verdict = "met" if rate >= TARGETS[name] else "missed"
            print(f"{name:10} {count:9,} {secs:8.2f} {rate:9,.0f}  >= {TARGETS[name]:,} {verdict}")
        if not args.no_profile:
            profile(folder, args.messages // 2, args.chains)


def profile(folder: Path, messages: int, chains: int) -> None:
    """Where the embedded run's time goes, by layer."""
    profiler = cProfile.Profile()
    profiler.enable()
    run_event_loop(run_chain(module_yaml(folder, "embedded", None), folder / "p", messages, chains))
    profiler.disable()
    stats = pstats.Stats(profiler)
    layers: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():
        layer = _layer(filename)
        layers[layer] = layers.get(layer, 0.0) + tottime
    total = sum(layers.values())
    print("\nwhere the embedded run's time goes (cProfile, own time by layer):")
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
