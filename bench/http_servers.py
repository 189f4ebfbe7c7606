"""pystatefun's own HTTP server (io/http_server.py) against the servers it could be replaced by, side by side
in one run: requests/s and the server process's CPU time per request.

Each server answers every request with a 202 and a small body, as the playground ingress does, and runs
in a process of its own on uvloop (as ``pystatefun run`` does), under the same limits where the library
has a setting for them:

  ================  =======  =======  ============  =================
  limit             ours     aiohttp  uvicorn h11   uvicorn httptools
  ================  =======  =======  ============  =================
  request head      64 KiB   64 KiB   64 KiB        none (*)
  request body      32 MiB   32 MiB   32 MiB (app)  32 MiB (app)
  keep-alive idle   30 s     30 s     30 s          30 s
  open connections  1,024    none     1,024 (**)    1,024 (**)
  ================  =======  =======  ============  =================

  (*) uvicorn has no head limit with httptools; (**) uvicorn's ``limit_concurrency`` answers 503 beyond
  it rather than refusing the connection. Header/body read and write timeouts: only ours has them.

The load is wrk (C, keep-alive, ``apt-get install wrk``): one thread, 32 connections, a 5-byte PUT to
``/bench/counter/k`` like an ingress message. The server's CPU time is read from /proc/<pid>/stat before
and after each measured run, so the client's CPU does not count. Rounds alternate the servers, so noise
from other work on the machine spreads over all of them. Run: ``.venv/bin/python bench/http_servers.py``
(about 70 s with the defaults); with ``--record`` every round's requests/s and CPU per request (the ranges
printed go from the lowest to the highest of them) are appended to docs/benchmarks/results.json and the
charts redrawn (bench/results.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results as bench_results  # bench/results.py: --record

MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
KEEP_ALIVE_SECONDS = 30
MAX_CONNECTIONS = 1024
ANSWER = b"accepted\n"
SERVERS = ("ours", "aiohttp", "uvicorn-h11", "uvicorn-httptools")
SYSTEMS = {"ours": "ours, hardened", "aiohttp": "aiohttp", "uvicorn-h11": "uvicorn + h11",  # names in results.json
           "uvicorn-httptools": "uvicorn + httptools"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRK_SCRIPT = """wrk.method = "PUT"
wrk.path = "/bench/counter/k"
wrk.headers["Content-Type"] = "application/vnd.io.statefun.types/int"
wrk.body = "\\13\\1\\0\\0\\0"
"""


# -- the servers, each run by `http_servers.py --serve NAME --port PORT` ------------------------------------

async def serve_ours(port: int) -> None:
    from pystatefun.io.http_server import HttpServer, Request, Response

    async def handle(request: Request) -> Response:
        return Response(202, ANSWER, {"Content-Type": "text/plain; charset=utf-8"})

    server = HttpServer(handle, MAX_BODY_BYTES)  # its defaults are the limits in the table above
    await server.start("127.0.0.1", port)
    await asyncio.Event().wait()


async def serve_aiohttp(port: int) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202, body=ANSWER, content_type="text/plain", charset="utf-8")

    app = web.Application(client_max_size=MAX_BODY_BYTES,
                          handler_args={"max_line_size": MAX_HEAD_BYTES, "max_field_size": MAX_HEAD_BYTES})
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEP_ALIVE_SECONDS)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def asgi_app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
    """The smallest ASGI app that reads the body (up to the limit, as the others do) and answers 202."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        event = await receive()
        size += len(event.get("body", b""))
        more = event.get("more_body", False)
        if size > MAX_BODY_BYTES:
            await send({"type": "http.response.start", "status": 413, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(ANSWER))]})
    await send({"type": "http.response.body", "body": ANSWER})


def serve_uvicorn(port: int, http: str) -> None:
    import uvicorn

    uvicorn.run(asgi_app, host="127.0.0.1", port=port, http=http, loop="uvloop", lifespan="off",
                access_log=False, log_level="warning", timeout_keep_alive=KEEP_ALIVE_SECONDS,
                limit_concurrency=MAX_CONNECTIONS, h11_max_incomplete_event_size=MAX_HEAD_BYTES)


def serve(name: str, port: int) -> None:
    import uvloop

    if name == "ours":
        uvloop.run(serve_ours(port))
    elif name == "aiohttp":
        uvloop.run(serve_aiohttp(port))
    else:
        serve_uvicorn(port, name.removeprefix("uvicorn-"))


# -- the measurement ---------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start(name: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{name} did not listen on 127.0.0.1:{port} within 20 s")


def wrk(port: int, seconds: float, script: Path, connections: int) -> tuple[int, int]:
    """(requests answered, socket errors and non-2xx answers) of one wrk run."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script),
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return requests, errors + (int(non_2xx.group(1)) if non_2xx else 0)


def measure(name: str, seconds: float, script: Path, connections: int) -> tuple[float, float, float]:
    """(requests/s, CPU microseconds per request, share of a core) of one server."""
    process, port = start(name)
    try:
        wrk(port, 1, script, connections)  # warm up: imports, caches, connections
        before, t0 = cpu_seconds(process.pid), time.monotonic()
        requests, errors = wrk(port, seconds, script, connections)
        cpu, elapsed = cpu_seconds(process.pid) - before, time.monotonic() - t0
    finally:
        process.kill()
        process.wait(10)
    if errors:
        raise SystemExit(f"{name}: {errors} errors or non-2xx answers under load")
    return requests / seconds, cpu / requests * 1e6, cpu / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measured run (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each server, alternating (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk's keep-alive connections (default 32)")
    parser.add_argument("--only", nargs="+", choices=SERVERS, default=list(SERVERS), help="servers to measure")
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in args.only}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "put.lua"
        script.write_text(WRK_SCRIPT)
        for _ in range(args.rounds):
            for name in args.only:
                results[name].append(measure(name, args.seconds, script, args.connections))
    print(f"trivial 202 handler, wrk -t1 -c{args.connections}, {args.seconds:g} s x {args.rounds} rounds, "
          f"{os.cpu_count()} cores shared with the client")
    print(f"{'server':<19} {'requests/s':>17} {'CPU us/request':>16} {'core used':>10} {'CPU/request vs ours':>20}")
    ours = min(r[1] for r in results["ours"]) if "ours" in results else None
    for name, runs in results.items():
        rates = sorted(r[0] for r in runs)
        costs = sorted(r[1] for r in runs)
        share = max(r[2] for r in runs)
        ratio = f"{costs[0] / ours:.2f}x" if ours else "-"
        print(f"{name:<19} {rates[0]:>8,.0f}-{rates[-1]:<8,.0f} {costs[0]:>7.1f}-{costs[-1]:<8.1f} "
              f"{share:>9.0%} {ratio:>20}")
    if args.record:  # every round, rounded as printed; results.json lists the CPU panel first
        bench_results.record("http_servers", [
            *((SYSTEMS[name], "CPU µs per request", round(r[1], 1)) for name, runs in results.items() for r in runs),
            *((SYSTEMS[name], "requests/s", round(r[0])) for name, runs in results.items() for r in runs),
        ], args.note)


if __name__ == "__main__":
    main()
