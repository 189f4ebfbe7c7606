"""The smoke test under faults in CI (issue 6): the three CI configurations with kills, the checker's
self-check, and a tiny fault-free run of every other function form whose serve script is present.

Each run is `python -m tests.smoke ...` (what scripts/smoke runs) in a process of its own; a failed run keeps
its work dir and prints the command that reproduces it, which the assertion message shows.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support.kafka import BOOTSTRAP_ENV

from . import REPO
from .processes import FunctionForm

CI = {"instances": 64, "messages": 5000, "kills": 3}


def smoke(kafka_bootstrap: str, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {**os.environ, BOOTSTRAP_ENV: kafka_bootstrap}
    return subprocess.run([sys.executable, "-m", "tests.smoke", *args], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False)


def ci_args(backend: str, function: str) -> list[str]:
    return ["--backend", backend, "--function", function, "--instances", str(CI["instances"]),
            "--messages", str(CI["messages"]), "--kills", str(CI["kills"])]


def assert_pass(done: subprocess.CompletedProcess) -> None:
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines and lines[-1].startswith("SMOKE PASS"), "\n".join(lines[-40:])


@pytest.mark.parametrize("backend,function", [("embedded", "embedded"), ("embedded", "python"), ("kafka", "remote")])
def test_ci_configuration(request, kafka_bootstrap, backend, function):
    if function == "python":
        request.getfixturevalue("official_python")  # the official SDK's virtualenv, made once
    assert_pass(smoke(kafka_bootstrap, *ci_args(backend, function)))


def test_the_checker_catches_an_over_count(kafka_bootstrap):
    """One accepted message left out of the tracker must fail the run as over-counted."""
    done = smoke(kafka_bootstrap, "--instances", "8", "--messages", "200", "--kills", "0", "--uncounted", "1",
                 "--seed", "7")
    assert done.returncode == 1 and "over-counted" in done.stdout, done.stdout[-3000:]
    assert "reproduce: scripts/smoke" in done.stdout and "--uncounted 1" in done.stdout
    workdir = next(line.split("work dir kept: ")[1].split(" ")[0] for line in done.stdout.splitlines()
                   if "work dir kept: " in line)
    for kept in ("module.yaml", "runtime.log", "smoke.log", "data"):
        assert os.path.exists(os.path.join(workdir, kept)), kept
    import shutil
    shutil.rmtree(workdir)


@pytest.mark.parametrize("function", ["remote", "java", "go", "js"])
def test_every_other_form_without_faults(kafka_bootstrap, function):
    unavailable = FunctionForm(function).available()
    if unavailable:
        pytest.skip(unavailable)
    assert_pass(smoke(kafka_bootstrap, "--function", function, "--instances", "16", "--messages", "300",
                      "--kills", "0", "--function-kills", "0", "--proxy-503", "0", "--proxy-delay", "0"))
