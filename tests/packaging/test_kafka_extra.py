"""confluent-kafka is an extra: without it, what needs Kafka says so in one line naming the extra, and
everything else runs. The client is made unimportable for real, by a meta-path finder that refuses it,
installed through a sitecustomize on PYTHONPATH of the child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.processes import Runtime, free_port

GREETER = Path(__file__).resolve().parents[2] / "examples" / "greeter"
HINT = "needs the Kafka client: pip install 'pystatefun[kafka]'"

REFUSE_KAFKA = '''\
import importlib.abc
import sys


class _NoKafka(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "confluent_kafka" or name.startswith("confluent_kafka."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoKafka())
'''


@pytest.fixture
def without_kafka(tmp_path: Path) -> dict[str, str]:
    """The environment of a process in which `import confluent_kafka` fails."""
    folder = tmp_path / "no-kafka"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(REFUSE_KAFKA)
    env = {**os.environ, "PYTHONPATH": str(folder)}
    check = subprocess.run([sys.executable, "-c", "import confluent_kafka"], env=env, capture_output=True, text=True)
    assert check.returncode != 0 and "No module named 'confluent_kafka'" in check.stderr
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pystatefun.cli", "run", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_a_module_with_a_kafka_egress_names_the_extra_in_one_line(tmp_path, without_kafka):
    (tmp_path / "greeter.py").write_text((GREETER / "greeter.py").read_text())
    module = tmp_path / "module.yaml"
    module.write_text(f"""\
kind: pystatefun.v1/embedded
spec:
  functions: example/*
  module: greeter:functions
---
kind: io.statefun.playground.v1/ingress
spec:
  port: {free_port()}
---
kind: io.statefun.kafka.v1/egress
spec:
  id: example/greetings
  address: 127.0.0.1:9092
""")
    done = _run([str(module), "--data-dir", str(tmp_path / "data"), "--admin-port", "0"], without_kafka, tmp_path)
    assert done.returncode != 0
    assert done.stderr.splitlines() == [f"Error: {module}: a Kafka ingress or egress {HINT}"]


def test_the_kafka_backend_names_the_extra_in_one_line(tmp_path, without_kafka):
    done = _run([str(GREETER / "module.yaml"), "--backend", "kafka", "--bootstrap-servers", "127.0.0.1:9092",
                 "--app", "greeter"], without_kafka, tmp_path)
    assert done.returncode != 0
    assert done.stderr.splitlines() == [f"Error: --backend kafka {HINT}"]


def test_everything_else_runs_without_the_kafka_client(tmp_path, without_kafka):
    imports = subprocess.run(
        [sys.executable, "-c", "import pystatefun, pystatefun.cli, pystatefun.app, pystatefun.serving.server, "
         "pystatefun.testing"], env=without_kafka, capture_output=True, text=True)
    assert imports.returncode == 0, imports.stderr

    runtime = Runtime(GREETER / "module.yaml", tmp_path / "data", env={"PYTHONPATH": without_kafka["PYTHONPATH"]})
    runtime.start()
    try:
        sent = runtime.send("/example/person/Bob", "example/GreetRequest", json.dumps({"name": "Bob"}).encode())
        assert sent.status == 202
        assert runtime.take("greetings", wait=10).body == b"Welcome Bob"
    finally:
        runtime.stop()
