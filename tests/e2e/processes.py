"""Real processes for end-to-end tests: `pystatefun run` and `pystatefun serve`, plus HTTP helpers."""

from __future__ import annotations

import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path


_random = random.Random()
_handed_out: set[int] = set()


def free_port(count: int = 1) -> int:
    """A port on 127.0.0.1 nobody listens on, and the ``count - 1`` after it (``pystatefun run --workers N``
    gives worker i the admin port + i). Chosen below the kernel's ephemeral range: a port in that range can
    be taken at any moment as the local end of an outgoing connection (a Kafka client's), and a server then
    fails to bind it. Never the same port twice in one test process, so that ports chosen one after the
    other before any is bound are all different."""
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = _random.randrange(10_000, first_ephemeral - count)
        ports = range(base, base + count)
        if _handed_out.isdisjoint(ports) and all(_bindable(port) for port in ports):
            _handed_out.update(ports)
            return base
    raise RuntimeError(f"no {count} free consecutive ports below {first_ephemeral}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}: {_output(process)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def _output(process: subprocess.Popen) -> str:
    try:
        return process.communicate(timeout=5)[0].decode(errors="replace")[-3000:]
    except Exception:
        return "(no output)"


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None, timeout: float = 30) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.read(), dict(response.headers))
    finally:
        connection.close()


def kill(process: subprocess.Popen | None) -> None:
    """kill -9, if it runs."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(10)


def terminate(process: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM, then kill -9 if it has not exited within ``timeout`` seconds."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(process)


class Runtime:
    """`pystatefun run MODULE --data-dir DIR` as a child process, with the ingress/egress ports in env."""

    def __init__(self, module: Path, data_dir: Path, env: dict[str, str] | None = None, log: Path | None = None,
                 args: tuple[str, ...] = ("--log-level", "warning")):
        self.module = module
        self.args = args
        self.data_dir = data_dir
        self.extra_env = env or {}
        self._pick_ports()
        self.log = log or data_dir.with_suffix(".log")
        self.process: subprocess.Popen | None = None

    def _pick_ports(self) -> None:
        self.ingress_port, self.egress_port, self.admin_port = free_port(), free_port(), free_port()
        self.env = {**os.environ, "INGRESS_PORT": str(self.ingress_port), "EGRESS_PORT": str(self.egress_port),
                    **self.extra_env}

    def start(self) -> "Runtime":
        """Starts the runtime; if a port picked as free was taken meanwhile (a client's ephemeral port can
        land on it), it starts again on new ports."""
        for attempt in range(3):
            try:
                return self._start()
            except RuntimeError as e:
                if "address already in use" not in str(e) or attempt == 2:
                    raise
                self._pick_ports()
        raise AssertionError("unreachable")

    def _start(self) -> "Runtime":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pystatefun.cli", "run", str(self.module), "--data-dir", str(self.data_dir),
             "--commit-interval", "20ms", "--admin-port", str(self.admin_port), *self.args],
            env=self.env, stdout=out, stderr=subprocess.STDOUT,
        )
        out.close()
        try:
            for port in (self.ingress_port, self.egress_port, self.admin_port):  # the admin API starts last
                wait_for_port(port, self.process)
        except Exception as e:
            kill(self.process)  # running but never listening: it must not outlive the test
            raise RuntimeError(f"{e}\n{self.log.read_text()[-3000:]}") from e
        return self

    def kill(self) -> None:
        kill(self.process)

    def stop(self) -> None:
        terminate(self.process, 15)

    def send(self, path: str, typename: str, body: bytes, key: str | None = None, timeout: float = 30) -> Reply:
        headers = {"Content-Type": f"application/vnd.{typename}"}
        if key:
            headers["Idempotency-Key"] = key
        return request(self.ingress_port, "PUT", path, body, headers, timeout)

    def take(self, topic: str, wait: float = 0) -> Reply:
        return request(self.egress_port, "GET", f"/{topic}?wait={wait}" if wait else f"/{topic}")


class FunctionServer:
    """A function server in a folder, on a free port: `pystatefun serve MODULE:OBJECT` (ours), or the
    command ``command_for(port)`` gives."""

    def __init__(self, folder: Path, reference: str, command_for: typing.Callable[[int], list[str]] | None = None):
        self.command_for = command_for or (lambda port: [
            sys.executable, "-m", "pystatefun.cli", "serve", reference, "--port", str(port), "--log-level", "warning"])
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> "FunctionServer":
        """Starts it; again on a new port if the one picked as free was taken meanwhile."""
        for attempt in range(3):
            env = {**os.environ, "PYTHONPATH": str(self.folder), "PORT": str(self.port)}
            self.process = subprocess.Popen(self.command_for(self.port), cwd=self.folder, env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                wait_for_port(self.port, self.process)
                return self
            except RuntimeError as e:
                if "already in use" not in str(e) or attempt == 2:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
