"""The wheel a user installs from PyPI: built from this tree, installed with its dependencies into a fresh
virtual environment (no extras, so without Kafka), and running the greeter example from there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from e2e.processes import free_port, request, terminate, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                    "-w", str(folder), str(ROOT)], check=True, timeout=300)
    (built,) = folder.glob("pystatefun-*.whl")
    return built


def test_the_wheel_ships_its_license_notice_and_type_information(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "pystatefun/py.typed" in names
    dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
    assert f"{dist_info}/licenses/LICENSE" in names and f"{dist_info}/licenses/NOTICE" in names
    assert "pystatefun/scaffold/template/functions.py.tmpl" in names  # what `pystatefun init` writes
    from pystatefun.admin.console import FILES  # the web console's files, served from the package (/ui)

    assert {f"pystatefun/admin/console_files/{path.name}" for path in FILES.iterdir()} <= set(names)
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert "Requires-Python: >=3.11" in metadata
    assert "Provides-Extra: kafka" in metadata and "Provides-Extra: otel" in metadata
    for extra_only in ("confluent-kafka", "opentelemetry"):
        assert not any(line.startswith(f"Requires-Dist: {extra_only}") and "extra ==" not in line
                       for line in metadata.splitlines())


def test_the_installed_wheel_runs_the_greeter(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q", str(wheel)],
                   check=True, env=env, timeout=600)
    where = subprocess.run([venv / "bin" / "python", "-c", "import pystatefun; print(pystatefun.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv))  # the installed wheel, not this source tree

    app = tmp_path / "greeter"
    shutil.copytree(ROOT / "examples" / "greeter", app, ignore=shutil.ignore_patterns("__pycache__", "test_*"))
    ingress, egress = free_port(), free_port()
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        runtime = subprocess.Popen(
            [venv / "bin" / "pystatefun", "run", "module.yaml", "--data-dir", str(tmp_path / "data"), "--admin-port", "0"],
            cwd=app, env={**env, "INGRESS_PORT": str(ingress), "EGRESS_PORT": str(egress)},
            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(ingress, runtime)
        wait_for_port(egress, runtime)
        sent = request(ingress, "PUT", "/example/person/Bob", json.dumps({"name": "Bob"}).encode(),
                       {"Content-Type": "application/vnd.example/GreetRequest"})
        assert sent.status == 202, log.read_text()
        assert request(egress, "GET", "/greetings?wait=10").body == b"Welcome Bob"
    finally:
        terminate(runtime, 15)
