"""The processes of a run: the function forms (a command that serves on PORT, or embedded in the runtime),
the two backends (the embedded runtime process; three Kafka-backend workers) and the module they run."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from e2e.processes import Runtime, free_port, kill, request, terminate, wait_for_port
from kafka.harness import Worker

from . import REPO

FORMS = ("embedded", "remote", "python", "java", "go", "js")
COMPAT = REPO / "compat" / "interpreter"


@dataclass(frozen=True)
class FunctionForm:
    """One form of the command interpreter. ``embedded`` runs inside the runtime; every other form is
    ``command(port)``, which serves it on 127.0.0.1:PORT under /statefun."""
    name: str

    @property
    def embedded(self) -> bool:
        return self.name == "embedded"

    def available(self) -> str | None:
        """None when this form can run here, else why not."""
        if self.name in ("embedded", "remote", "python"):
            return None
        script = COMPAT / self.name / "serve"
        return None if script.exists() else f"{script.relative_to(REPO)} does not exist (yet)"

    def command(self, port: int) -> list[str]:
        if self.name == "remote":
            return [sys.executable, "-m", "pystatefun.cli", "serve", "tests.smoke.interpreter:functions",
                    "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        script = COMPAT / self.name / "serve"
        if script.exists():
            return [str(script), str(port)]
        if self.name == "python":  # until compat/interpreter/python exists: our interpreter on the official SDK
            from support.official import official_python
            return [official_python(), str(REPO / "tests" / "e2e" / "official_server.py"), str(Path(__file__).parent),
                    "interpreter:functions", str(port)]
        raise RuntimeError(self.available())


class FunctionServer:
    """A remote form's server process on a fixed port; killed with -9 and started again on the same port."""

    def __init__(self, form: FunctionForm, log: Path):
        self.form, self.log = form, log
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.started_once = False

    def start(self) -> None:
        # the first start may build the form (Maven, npm, go build): give it time
        timeout = 30 if self.started_once else 900
        for attempt in range(3):
            with open(self.log, "ab") as out:
                self.process = subprocess.Popen(self.form.command(self.port), cwd=REPO, stdout=out,
                                                stderr=subprocess.STDOUT, env=os.environ.copy())
            try:
                wait_for_port(self.port, self.process, timeout=timeout)
                self.started_once = True
                return
            except RuntimeError as e:
                if attempt == 2 or "in use" not in self.log.read_text(errors="replace")[-2000:]:
                    raise RuntimeError(f"function server {self.form.name} did not start: {e}; see {self.log}") from e
                time.sleep(1)  # the port is still held (TIME_WAIT or a child of the killed server)

    def kill_and_restart(self, rng: random.Random) -> str:
        kill(self.process)
        time.sleep(rng.uniform(0, 1.0))
        self.start()
        return f"function server {self.form.name} killed (-9) and restarted on port {self.port}"

    def stop(self) -> None:
        terminate(self.process, 10)


def module_yaml(*, form: FunctionForm, function_url: str | None, bootstrap: str, discard_topic: str,
                verification_topic: str, ingress: str, commands_topic: str | None, group: str, playground: bool,
                playground_egress: bool) -> str:
    """The module a run writes: the interpreter (embedded, or remote behind the fault proxy with a short read
    timeout so that delayed answers are given up on and retried), the ingress, and both egresses as
    exactly-once Kafka egresses."""
    if form.embedded:
        docs = ["kind: pystatefun.v1/embedded\nspec:\n  functions: statefun.smoke.e2e/*\n"
                + "  module: tests.smoke.interpreter:functions\n"]
    else:
        docs = [f"""kind: io.statefun.endpoints.v2/http
spec:
  functions: statefun.smoke.e2e/*
  urlPathTemplate: {function_url}
  maxNumBatchRequests: 10000
  transport:
    type: io.statefun.transports.v1/okhttp
    timeouts: {{call: 10 min, connect: 2s, read: {READ_TIMEOUT}s, write: {READ_TIMEOUT}s}}
"""]
    if playground:
        docs.append("kind: io.statefun.playground.v1/ingress\nspec:\n  port: ${INGRESS_PORT}\n")
    if playground_egress:  # only so that the embedded runtime harness finds the port it waits for
        docs.append("kind: io.statefun.playground.v1/egress\nspec:\n  port: ${EGRESS_PORT}\n  topics: [unused]\n")
    if ingress == "kafka":
        docs.append(f"""kind: io.statefun.kafka.v1/ingress
spec:
  id: statefun.smoke.e2e/command-generator-source
  address: {bootstrap}
  consumerGroupId: {group}
  startupPosition:
    type: earliest
  topics:
    - topic: {commands_topic}
      valueType: statefun.smoke.e2e/commands
      targets: [statefun.smoke.e2e/command-interpreter-fn]
""")
    for egress in ("discard-sink", "verification-sink"):
        docs.append(f"""kind: io.statefun.kafka.v1/egress
spec:
  id: statefun.smoke.e2e/{egress}
  address: {bootstrap}
  deliverySemantic:
    type: exactly-once
    transactionTimeout: 1min
""")
    return "---\n".join(docs)


READ_TIMEOUT = 3          # seconds: the endpoint's read timeout; the proxy's delays exceed it
PROXY_DELAY = READ_TIMEOUT + 1.5


class EmbeddedBackend:
    """`pystatefun run` on one data dir: killed with -9 and started again on the same dir."""

    name = "embedded"

    def __init__(self, module: Path, workdir: Path):
        self.runtime = Runtime(module, workdir / "data", log=workdir / "runtime.log",
                               env={"PYTHONPATH": _pythonpath()}, args=("--log-level", "info"))
        self.data_dir = workdir / "data"

    def start(self) -> None:
        self.runtime.start()

    def ingress_port_list(self) -> list[int]:
        return [self.runtime.ingress_port]

    def kill_and_restart(self, rng: random.Random) -> str:
        self.runtime.kill()
        time.sleep(rng.uniform(0, 0.5))
        self.runtime.start()
        return f"runtime killed (-9) and restarted on {self.data_dir}"

    def alive(self) -> bool:
        return self.runtime.process is not None and self.runtime.process.poll() is None

    def parked(self) -> list:
        try:
            return json.loads(request(self.runtime.admin_port, "GET", "/parked", timeout=5).body)
        except Exception as e:  # noqa: BLE001 - diagnostics only
            return [f"(could not ask: {e!r})"]

    def stop(self) -> None:
        self.runtime.stop()


class KafkaBackend:
    """``workers`` Kafka-backend worker processes of one application; a random one is killed with -9 and
    started again with the same --worker-id (which fences its previous self)."""

    name = "kafka"

    def __init__(self, module: Path, workdir: Path, bootstrap: str, app: str, workers: int = 3, partitions: int = 6):
        self.ingress_ports = [free_port() for _ in range(workers)]   # each worker's playground ingress
        self.workers = [Worker(module, bootstrap, app, f"{app}-w{i}", workdir / f"worker-{i}.log", partitions,
                               env={"INGRESS_PORT": str(port)}) for i, port in enumerate(self.ingress_ports)]

    def start(self) -> None:
        for worker in self.workers:
            worker.start(wait=False)
        for worker in self.workers:
            wait_for_port(worker.admin_port, worker.process, timeout=120)

    def ingress_port_list(self) -> list[int]:
        return self.ingress_ports

    def kill_and_restart(self, rng: random.Random) -> str:
        index = rng.randrange(len(self.workers))
        worker = self.workers[index]
        worker.kill()
        time.sleep(rng.uniform(0, 0.5))
        worker.start()
        return f"worker {index} ({worker.worker_id}) killed (-9) and restarted"

    def alive(self) -> bool:
        return all(worker.alive() for worker in self.workers)

    def parked(self) -> list:
        out = []
        for worker in self.workers:
            try:
                out += json.loads(request(worker.admin_port, "GET", "/parked", timeout=5).body)
            except Exception as e:  # noqa: BLE001 - diagnostics only
                out.append(f"(could not ask {worker.worker_id}: {e!r})")
        return out

    def stop(self) -> None:
        for worker in self.workers:
            if worker.alive():
                worker.process.terminate()
        for worker in self.workers:
            worker.stop()


def _pythonpath() -> str:
    existing = os.environ.get("PYTHONPATH")
    return f"{REPO}{os.pathsep}{existing}" if existing else str(REPO)


def prepare_environment() -> None:
    """Every child process (runtime, workers, our function server) finds ``tests.smoke.interpreter``."""
    os.environ["PYTHONPATH"] = _pythonpath()
