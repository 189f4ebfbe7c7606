"""Requests/s and latency of a keyed counter through pystatefun and through Restate 1.7, in one run on
the same machine: 100 keys, 32 concurrent connections (wrk), each request adds 1 to its key's counter
and answers with the new value.

  restate               Restate 1.7.12 (npm @restatedev/restate-server), the function a virtual object of
                        restate-sdk served by hypercorn (HTTP/2), invoked through Restate's ingress;
  pystatefun remote     `pystatefun run` with the function served by `pystatefun serve`, invoked by
                        request/reply through the playground ingress (PUT ...?wait=10);
  pystatefun embedded   the same with the function inside the runtime.

Both systems commit durably before answering. Counters are checked afterwards against the number of
answered requests. Restate and its SDK are installed into ~/.cache/pystatefun-bench on first use (npm,
PyPI); wrk comes from Debian (apt-get install wrk). Run: ``.venv/bin/python bench/keyed_counter.py``;
with ``--record`` the requests/s printed are appended to docs/benchmarks/results.json and the charts
redrawn (bench/results.py), unless a counter check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import results as bench_results  # bench/results.py: --record

HERE = Path(__file__).parent
CACHE = Path.home() / ".cache" / "pystatefun-bench"
RESTATE_VERSION = "1.7.12"
RESTATE_BIN = CACHE / "restate" / "node_modules" / "@restatedev" / "restate-server-linux-x64" / "bin" / "restate-server"
RESTATE_VENV = CACHE / "restate-venv"
RESTATE_PORTS = {"ingress": 8080, "admin": 9070, "node": 5122}  # Restate's defaults
KEYS = 100
CONNECTIONS = 32
SYSTEMS = {"restate": "Restate 1.7", "pystatefun remote": "pystatefun remote",  # names in results.json
           "pystatefun embedded": "pystatefun embedded"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_for(port: int, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        if not port_free(port):
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on {port}")


class Processes:
    """Starts processes in their own sessions and stops them all, whatever happens."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, command: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, **kwargs)
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.running):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.running.clear()


def install_restate() -> None:
    if not RESTATE_BIN.exists():
        (CACHE / "restate").mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", f"@restatedev/restate-server@{RESTATE_VERSION}"],
                       cwd=CACHE / "restate", check=True)
    if not (RESTATE_VENV / "bin" / "hypercorn").exists():
        subprocess.run([sys.executable, "-m", "venv", str(RESTATE_VENV)], check=True)
        subprocess.run([str(RESTATE_VENV / "bin" / "pip"), "install", "--quiet", "restate-sdk", "hypercorn"], check=True)


def wrk(port: int, seconds: float, mode: str) -> dict[str, float]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    result = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", "-s", str(HERE / "wrk" / "keyed.lua"),
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, env={**os.environ, "KEYED_MODE": mode}, check=True,
    )
    out = result.stdout
    completed = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        "completed": completed,
        "errors": int(errors.group(1)) if errors else 0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system, all threads) process ``pid`` has used (Linux: /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> bytes:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def run_restate(seconds: float, processes: Processes) -> dict[str, float]:
    install_restate()
    busy = [name for name, port in RESTATE_PORTS.items() if not port_free(port)]
    if busy:
        raise SystemExit(f"Restate's {', '.join(busy)} port is in use: {RESTATE_PORTS}")
    workdir = Path(tempfile.mkdtemp(prefix="restate-"))
    try:
        server = processes.start([str(RESTATE_BIN), "--bind-ip", "127.0.0.1"], cwd=workdir)
        wait_for(RESTATE_PORTS["admin"], server, "restate-server")
        wait_for(RESTATE_PORTS["ingress"], server, "restate-server")
        port = free_port()
        function = processes.start([str(RESTATE_VENV / "bin" / "hypercorn"), "restate_counter:app", "--bind", f"127.0.0.1:{port}"],
                                   cwd=HERE / "functions")
        wait_for(port, function, "hypercorn")
        deployment = json.dumps({"uri": f"http://127.0.0.1:{port}"}).encode()
        for _ in range(50):  # the admin API may need a moment after it listens
            try:
                http("POST", f"http://127.0.0.1:{RESTATE_PORTS['admin']}/deployments", deployment, {"content-type": "application/json"})
                break
            except OSError:
                time.sleep(0.2)
        result = wrk(RESTATE_PORTS["ingress"], seconds, "restate")
        total = sum(int(http("POST", f"http://127.0.0.1:{RESTATE_PORTS['ingress']}/counter/k{k}/get"))
                    for k in range(KEYS))
        return {**result, "total": total}
    finally:
        processes.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Pystatefun:
    """A running `pystatefun run` of the keyed counter: its ports, process and folder."""

    ingress: int
    admin: int
    process: subprocess.Popen
    folder: Path

    def counted(self) -> int:
        """The sum of the counters (read through the admin API)."""
        total = 0
        for k in range(KEYS):
            state = json.loads(http("GET", f"http://127.0.0.1:{self.admin}/state/bench/counter/k{k}"))["state"]
            total += state["count"]["value"] if "count" in state else 0
        return total


def start_pystatefun(kind: str, processes: Processes, env: dict[str, str] | None = None) -> Pystatefun:
    """Starts `pystatefun run` of the keyed counter (its environment: ours with ``env``), the counter
    embedded or served by `pystatefun serve`; ``processes.stop_all`` stops it, then remove its folder."""
    folder = Path(tempfile.mkdtemp(prefix="pystatefun-"))
    ingress, egress, admin = free_port(), free_port(), free_port()
    if kind == "embedded":
        shutil.copy(HERE / "functions" / "keyed_counter.py", folder / "keyed_counter.py")
        functions = "kind: pystatefun.v1/embedded\nspec:\n  functions: bench/*\n  module: keyed_counter:functions\n"
    else:
        port = free_port()
        server = processes.start([sys.executable, "-m", "pystatefun.cli", "serve", "keyed_counter:functions",
                                  "--port", str(port), "--log-level", "warning"], cwd=HERE / "functions")
        wait_for(port, server, "pystatefun serve")
        functions = (f"kind: io.statefun.endpoints.v2/http\nspec:\n  functions: bench/*\n"
                     f"  urlPathTemplate: http://127.0.0.1:{port}/statefun\n")
    (folder / "module.yaml").write_text(
        functions + f"---\nkind: io.statefun.playground.v1/ingress\nspec:\n  port: {ingress}\n"
        f"---\nkind: io.statefun.playground.v1/egress\nspec:\n  port: {egress}\n  topics: [unused]\n"
    )
    runtime = processes.start([sys.executable, "-m", "pystatefun.cli", "run", str(folder / "module.yaml"),
                               "--data-dir", str(folder / "data"), "--admin-port", str(admin), "--log-level", "warning"],
                              env={**os.environ, **(env or {})})
    wait_for(ingress, runtime, "pystatefun run")
    return Pystatefun(ingress, admin, runtime, folder)


def load(running: Pystatefun, seconds: float, settle: float = 0.0) -> dict[str, float]:
    """wrk's load on a running pystatefun for ``seconds``, with the runtime's CPU time per answered request
    (all its threads), which the other processes of a busy machine change less than requests/s. The CPU
    time counts ``settle`` seconds more after the load: what the runtime still does for it (exporting the
    spans of the last requests, say) counts, and is done before anything else is measured."""
    cpu = cpu_seconds(running.process.pid)
    result = wrk(running.ingress, seconds, "pystatefun")
    time.sleep(settle)
    result["cpu_us"] = (cpu_seconds(running.process.pid) - cpu) / max(result["completed"], 1) * 1e6
    return result


def run_pystatefun(kind: str, seconds: float, processes: Processes) -> dict[str, float]:
    running = start_pystatefun(kind, processes)
    try:
        result = load(running, seconds)
        time.sleep(0.5)  # requests wrk gave up on at the end still complete
        return {**result, "total": running.counted()}
    finally:
        processes.stop_all()
        shutil.rmtree(running.folder, ignore_errors=True)


def counted_exactly(run: dict[str, float], loads: int = 1) -> bool:
    """Whether the counters add up to the answered requests of a run (of ``loads`` wrk runs), with no
    error answers."""
    # wrk stops in the middle of at most one request per connection; those may still have counted
    return run["completed"] <= run["total"] <= run["completed"] + CONNECTIONS * loads and not run["errors"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--skip-restate", action="store_true")
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    processes = Processes()
    rows = {}
    try:
        if not args.skip_restate:
            rows["restate"] = run_restate(args.seconds, processes)
        rows["pystatefun remote"] = run_pystatefun("remote", args.seconds, processes)
        rows["pystatefun embedded"] = run_pystatefun("embedded", args.seconds, processes)
    finally:
        processes.stop_all()
    print(f"keyed counter, {KEYS} keys, {CONNECTIONS} connections (wrk), durable, all on this machine")
    print(f"{'system':20} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'vs Restate':>10}  counters")
    restate = rows.get("restate")
    runs, all_exact = [], True  # for --record: the requests/s printed, named as in results.json
    for name, r in rows.items():
        ratio = f"{r['rps'] / restate['rps']:9.1f}x" if restate and name != "restate" else ""
        exact = counted_exactly(r)
        check = f"{r['total']:,} for {r['completed']:,} answered" + ("" if exact else "  MISMATCH")
        print(f"{name:20} {r['rps']:11,.0f} {r['p50']:8.2f} {r['p99']:8.2f} {ratio:>10}  {check}")
        runs.append((SYSTEMS[name], "requests/s", round(r["rps"])))
        all_exact = all_exact and exact
    if restate:
        print("target: pystatefun remote >= 10x Restate's requests/s")
    if args.record:
        if all_exact:
            bench_results.record("keyed_counter", runs, args.note)
        else:
            print("not recorded: a counter did not match its answered requests", file=sys.stderr)


if __name__ == "__main__":
    main()
