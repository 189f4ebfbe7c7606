"""What the adversarial tests attack: pystatefun's HTTP server in a process of its own (http_target.py,
limits set per test) and a real ``pystatefun serve``; their memory is read from /proc while they are
attacked, and a well-behaved client probes them meanwhile."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.processes import free_port, terminate, wait_for_port

# The issue asks that a well-behaved client is answered within a second while the server is attacked;
# the ceiling is 3 s because this machine's two cores are shared with other test runs.
PROBE_CEILING_SECONDS = 3.0
TARGET = Path(__file__).parent / "http_target.py"
FUNCTIONS = '''
from pystatefun import StatefulFunctions

functions = StatefulFunctions()


@functions.bind("adversarial/noop")
def noop(context, message):
    pass
'''


@dataclass
class Target:
    """A server process under attack, and how it answers a well-behaved GET: 202 from the target, 405
    from a function endpoint (functions are called with POST)."""

    process: subprocess.Popen
    port: int
    log: Path
    probe_status: int

    def _status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.process.pid}/status")

    def rss(self) -> int:
        return self._status_kib("VmRSS")

    def peak_rss(self) -> int:
        """The most memory the process has held at once so far (VmHWM): no sampling can miss a peak."""
        return self._status_kib("VmHWM")

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _start(command: list[str], log: Path, port: int, probe_status: int, cwd: Path | None = None) -> Target:
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        wait_for_port(port, process)
    except Exception as e:
        terminate(process, 5)
        raise RuntimeError(f"{e}\n{log.read_text(errors='replace')[-2000:]}") from e
    return Target(process, port, log, probe_status)


@pytest.fixture
def http_target(tmp_path: Path) -> typing.Iterator[typing.Callable[..., Target]]:
    """Starts http_target.py with HttpServer options; every target started is stopped afterwards."""
    started: list[Target] = []

    def start(**options: typing.Any) -> Target:
        port = free_port()
        log = tmp_path / f"target-{len(started)}.log"
        target = _start([sys.executable, str(TARGET), str(port), json.dumps(options)], log, port, 202)
        started.append(target)
        return target

    yield start
    for target in started:
        terminate(target.process, 10)


@pytest.fixture
def function_server(tmp_path: Path) -> typing.Iterator[Target]:
    """A real ``pystatefun serve`` of a module with one function, with its default limits."""
    (tmp_path / "noop_app.py").write_text(FUNCTIONS)
    port = free_port()
    target = _start([sys.executable, "-m", "pystatefun.cli", "serve", "noop_app:functions", "--port", str(port),
                     "--log-level", "warning"], tmp_path / "serve.log", port, 405, cwd=tmp_path)
    yield target
    terminate(target.process, 10)


@pytest.fixture(params=["target", "serve"])
def any_server(request: pytest.FixtureRequest, http_target: typing.Callable[..., Target]) -> Target:
    """The same attack against our server with its defaults, and against a real ``pystatefun serve``."""
    if request.param == "target":
        return http_target()
    return request.getfixturevalue("function_server")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def probe(target: Target) -> tuple[int, float]:
    """A well-behaved request on a new connection: its status and how long the answer took."""
    started = time.monotonic()
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", target.port), 10)
    try:
        writer.write(f"GET /probe/p/1 HTTP/1.1\r\nHost: probe\r\nContent-Length: 0\r\n\r\n".encode())
        status, _, _ = await asyncio.wait_for(read_response(reader), 10)
    finally:
        writer.close()
    return status, time.monotonic() - started


async def while_probing(target: Target, attack: typing.Awaitable[typing.Any]) -> tuple[typing.Any, float]:
    """Runs ``attack`` while probing ``target`` every 0.2 s; the attack's result and the slowest probe,
    which must have been answered like a request in peace."""
    task = asyncio.ensure_future(attack)
    worst = 0.0
    while not task.done():
        status, seconds = await probe(target)
        assert status == target.probe_status, f"a well-behaved client got {status} during the attack"
        worst = max(worst, seconds)
        await asyncio.wait([task], timeout=0.2)
    return task.result(), worst
