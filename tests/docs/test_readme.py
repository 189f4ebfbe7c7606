"""Follows README.md literally: its install line in a fresh virtual environment, the greeter and the first
function with the commands of its code blocks, and the answers it documents.

The commands are read from the README's ```bash blocks, so an edit that breaks them fails here. Two things
differ from a user's shell, both so the test runs beside others: the ports (the modules read
``INGRESS_PORT`` and ``EGRESS_PORT``, and ``--admin-port`` is appended) and the ``--data-dir`` (under
tmp_path). The package is installed from this checkout, not editable, so the test sees what a wheel has.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from e2e.processes import free_port

REPO = pathlib.Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
INSTALL = "python3 -m venv .venv && . .venv/bin/activate && pip install -e ."
TESTS = ['python3 -m venv .venv && .venv/bin/pip install -e ".[dev]"', ".venv/bin/python -m pytest"]


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.DOTALL | re.MULTILINE)


def command_lines() -> list[str]:
    return [line for block in code_blocks("bash") for line in block.splitlines() if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> pathlib.Path:
    """The README's install line, in a new virtual environment outside the checkout."""
    assert INSTALL in command_lines(), "the README's install line changed; update this test with it"
    path = tmp_path_factory.mktemp("readme") / ".venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(path / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(REPO)],
                   check=True, timeout=600)
    return path


def run_section(venv: pathlib.Path, module: str, tmp_path: pathlib.Path) -> list[tuple[str, str, str]]:
    """Starts the README's ``pystatefun run`` line for ``module``, runs the curl lines that follow it and
    returns (command, documented answer, actual answer) for each; stops the runtime whatever happens."""
    lines = command_lines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"pystatefun run {module}"))
    curls = []
    for line in lines[start + 1:]:
        if not line.startswith("curl "):
            break
        curls.append(line)
    assert curls, f"no curl lines follow `pystatefun run {module}` in the README"

    ingress, egress, admin = free_port(), free_port(), free_port()
    argv = shlex.split(lines[start])
    argv[0] = str(venv / "bin" / argv[0])
    argv[argv.index("--data-dir") + 1] = str(tmp_path / "data")
    env = dict(os.environ, INGRESS_PORT=str(ingress), EGRESS_PORT=str(egress), PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    log = (tmp_path / "run.log").open("w")
    runtime = subprocess.Popen([*argv, "--admin-port", str(admin)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            assert runtime.poll() is None, (tmp_path / "run.log").read_text()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/health", timeout=1)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        results = []
        for line in curls:
            command, _, comment = line.partition("#")
            documented = comment.strip().removeprefix("->").strip()
            # an egress record is written in an epoch after the one that accepted the message: a read waits
            # for it (?wait=10), as a user who reads too early would by reading again
            command = re.sub(r"localhost:8091/(\w+)\b(?!\?)", rf"'127.0.0.1:{egress}/\1?wait=10'", command)
            command = command.replace("localhost:8090", f"127.0.0.1:{ingress}")
            answer = subprocess.run(["bash", "-c", f"curl -sS --fail-with-body {command}"], capture_output=True, text=True, timeout=60)
            assert answer.returncode == 0, (line, answer.stdout, answer.stderr)
            results.append((line, documented, answer.stdout.strip()))
        return results
    finally:
        runtime.terminate()
        runtime.wait(timeout=30)
        log.close()


def test_the_test_command_is_the_one_ci_runs():
    for command in TESTS:
        assert command in command_lines()
    assert ".venv/bin/python -m pytest" in (REPO / ".ci" / "run").read_text()


def test_the_greeter_answers_as_documented(venv, tmp_path):
    results = run_section(venv, "examples/greeter/module.yaml", tmp_path)
    documented = [(line, expected, actual) for line, expected, actual in results if expected]
    assert documented, "the README documents no answer for the greeter"
    for line, expected, actual in documented:
        assert actual == expected, line


def test_the_first_function_runs_end_to_end(venv, tmp_path):
    # the README shows the example's files as they are (counter.py after its docstring)
    counter, module = (REPO / "examples/counter/counter.py").read_text(), (REPO / "examples/counter/module.yaml").read_text()
    assert any(block in counter and block.startswith("from pystatefun") for block in code_blocks("python"))
    assert module in code_blocks("yaml")
    results = run_section(venv, "examples/counter/module.yaml", tmp_path)
    for line, expected, actual in results:
        if expected:
            assert actual == expected, line
    assert results[-1][1] == '{"count": 7}'
