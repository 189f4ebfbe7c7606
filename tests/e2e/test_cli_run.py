"""`pystatefun run` as a user meets it: what it logs, how it stops, and the errors it gives for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLES
from .processes import Runtime, free_port, request, wait_for_port

GREETER = EXAMPLES / "greeter"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    # free ports, never the examples' 8090 and 8091: the README's greeter may be running on this machine
    ports = {"INGRESS_PORT": str(free_port()), "EGRESS_PORT": str(free_port())}
    return subprocess.run([sys.executable, "-m", "pystatefun.cli", "run", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, **ports})


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_logs_what_it_listens_on_answers_health_and_stops_cleanly_on_sigterm(tmp_path):
    runtime = Runtime(GREETER / "module.yaml", tmp_path / "data")
    runtime.start()
    try:
        health = request(runtime.admin_port, "GET", "/health")
        assert health.status == 200 and json.loads(health.body)["status"] == "ok"
        assert runtime.send("/example/person/Bob", "example/GreetRequest", b'{"name": "Bob"}').status == 202
        runtime.process.send_signal(signal.SIGTERM)
        assert runtime.process.wait(15) == 0
    finally:
        runtime.stop()
    log = runtime.log.read_text()
    # the test runs at --log-level warning: nothing but warnings and errors, none of them
    assert "Traceback" not in log and "ERROR" not in log

    runtime = Runtime(GREETER / "module.yaml", tmp_path / "data")
    command = [sys.executable, "-m", "pystatefun.cli", "run", str(runtime.module), "--data-dir", str(runtime.data_dir),
               "--admin-port", str(runtime.admin_port)]
    process = subprocess.Popen(command, env=runtime.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runtime.process = process
    try:
        wait_for_port(runtime.egress_port, process)
        assert runtime.take("greetings", wait=10).body == b"Welcome Bob"  # committed before the SIGTERM
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=15)[0]
    finally:
        runtime.stop()
    assert process.returncode == 0
    assert f"playground ingress io.statefun.playground/ingress listening on http://127.0.0.1:{runtime.ingress_port}" in output
    assert f"playground egress io.statefun.playground/egress listening on http://127.0.0.1:{runtime.egress_port}" in output
    assert f"admin API listening on http://127.0.0.1:{runtime.admin_port}" in output
    assert "functions example/*: embedded, from greeter:functions" in output
    assert "stopped: the last epoch is committed" in output


def test_refuses_a_data_dir_in_use_by_another_process(tmp_path):
    runtime = Runtime(GREETER / "module.yaml", tmp_path / "data").start()
    try:
        second = run_cli(str(GREETER / "module.yaml"), "--data-dir", str(tmp_path / "data"), "--admin-port", "0")
    finally:
        runtime.stop()
    assert_clean_error(second, "is in use by process", "own --data-dir")


def test_refuses_a_different_partition_count_for_an_existing_data_dir(tmp_path):
    runtime = Runtime(GREETER / "module.yaml", tmp_path / "data").start()
    runtime.stop()
    result = run_cli(str(GREETER / "module.yaml"), "--data-dir", str(tmp_path / "data"), "--partitions", "3", "--admin-port", "0")
    assert_clean_error(result, "created with 8 partitions, not 3", "--partitions 8")


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("kind: io.statefun.endpoints.v2/http\nspec:\n  functions: a/*\n  urlPathTemplate: http://x/\n  maxBatch: 3\n",
         ["module.yaml", "maxBatch"]),
        ("kind: io.statefun.nonsense/v1\nspec: {}\n", ["module.yaml", "io.statefun.nonsense/v1"]),
        ("kind: io.statefun.endpoints.v2/http\nspec:\n  functions: a/*\n  urlPathTemplate: ${NOT_SET_ANYWHERE}\n",
         ["NOT_SET_ANYWHERE"]),
        ("kind: pystatefun.v1/embedded\nspec:\n  functions: a/*\n  module: nowhere_to_be_found:functions\n",
         ["nowhere_to_be_found"]),
        ("kind: io.statefun.endpoints.v2/http\nspec:\n  functions: a/*\n  urlPathTemplate: http://127.0.0.1:1/\n---\n"
         "kind: io.statefun.kinesis.v1/egress\nspec:\n  id: a/out\n  awsRegion: {type: specific, id: us-east-1}\n"
         "  awsCredentials: {type: profile, profileName: nope, profilePath: no-such-credentials}\n",
         ["Kinesis egress a/out: awsCredentials profile 'nope' is not in", "no-such-credentials"]),
        (": : not yaml [", ["module.yaml"]),
    ],
    ids=["unknown-key", "unknown-kind", "unset-env-var", "missing-module", "kinesis-no-such-profile", "not-yaml"],
)
def test_bad_module_files_are_refused_with_a_message_not_a_traceback(tmp_path, text, fragments):
    path = tmp_path / "module.yaml"
    path.write_text(text)
    result = run_cli(str(path), "--data-dir", str(tmp_path / "data"), "--admin-port", "0")
    assert_clean_error(result, *fragments)


def test_a_port_in_use_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(str(GREETER / "module.yaml"), "--data-dir", str(tmp_path / "data"), "--admin-port", str(port))
    assert_clean_error(result, f"cannot start: the admin API cannot listen on 127.0.0.1:{port}", "--admin-port")


def test_a_missing_module_file_is_a_usage_error(tmp_path):
    result = run_cli(str(tmp_path / "nope.yaml"), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "nope.yaml" in result.stderr

