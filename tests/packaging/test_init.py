"""`pystatefun init NAME` writes a project that passes its own tests and answers as its README says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.processes import free_port, request, terminate, wait_for_port


def init(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pystatefun.cli", "init", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    done = init("hello", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "hello"


def test_the_project_has_what_a_user_needs(project):
    names = {path.name for path in project.iterdir()}
    assert {"functions.py", "test_functions.py", "module.yaml", "module-remote.yaml", "Dockerfile",
            "README.md"} <= names
    dockerfile = (project / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "pip install" in dockerfile
    assert 'CMD ["pystatefun", "run", "module.yaml", "--data-dir", "/data"]' in dockerfile
    assert "VOLUME /data" in dockerfile


def test_the_project_passes_its_own_tests(project):
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                           capture_output=True, text=True, timeout=120)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout


def test_its_module_answers_the_request_its_readme_documents(project, tmp_path):
    readme = (project / "README.md").read_text()
    curl = "curl -X PUT -H \"Content-Type: application/vnd.hello/Greet\" -d '{}' \"localhost:8090/hello/greeter/ada?wait=5\""
    documented = '# -> {"greeting": "Hello ada, visit number 1", "visits": 1}'
    assert curl in readme and documented in readme

    port = free_port()
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        runtime = subprocess.Popen(
            [sys.executable, "-m", "pystatefun.cli", "run", "module.yaml", "--data-dir", str(tmp_path / "data"),
             "--admin-port", "0"], cwd=project, env={**os.environ, "INGRESS_PORT": str(port)},
            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, runtime)
        headers = {"Content-Type": "application/vnd.hello/Greet"}
        answer = request(port, "PUT", "/hello/greeter/ada?wait=5", b"{}", headers)
        assert answer.status == 200, log.read_text()
        assert answer.headers["Content-Type"] == "application/vnd.hello/Greeting"
        assert json.loads(answer.body) == json.loads(documented.removeprefix("# -> "))
        again = request(port, "PUT", "/hello/greeter/ada?wait=5", b'{"salutation": "Hi"}', headers)
        assert json.loads(again.body) == {"greeting": "Hi ada, visit number 2", "visits": 2}
    finally:
        terminate(runtime, 15)


@pytest.mark.parametrize("name, says", [
    ("my-app", "'my-app' is not a valid name: use ASCII letters, digits and underscores"),
    ("2fast", "'2fast' is not a valid name"),
    ("import", "'import' is a Python keyword: choose another name"),
])
def test_a_name_that_is_not_a_python_identifier_is_refused_in_one_line(tmp_path, name, says):
    done = init(name, cwd=tmp_path)
    assert done.returncode != 0
    (line,) = done.stderr.splitlines()
    assert says in line
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_with_files_is_refused_and_left_alone(tmp_path):
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "notes.txt").write_text("mine")
    done = init("hello", cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        "Error: hello already exists and is not an empty directory: choose a new one with --directory DIR"]
    assert [path.name for path in (tmp_path / "hello").iterdir()] == ["notes.txt"]


def test_directory_chooses_where_it_goes(tmp_path):
    done = init("hello", "--directory", str(tmp_path / "elsewhere"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "hello/greeter" in (tmp_path / "elsewhere" / "functions.py").read_text()


def test_a_pystatefun_not_from_an_index_says_how_the_project_gets_it(tmp_path):
    """This checkout is installed from its folder (pip install -e): requirements.txt's pin is for an index,
    so init says where to install pystatefun from instead (the folder this test's pystatefun came from)."""
    done = init("hello", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    source = Path(__file__).resolve().parents[2]
    assert (f"note: this pystatefun was installed from file://{source}, not from a package index" in done.stdout
            and f"(pip install {source})" in done.stdout), done.stdout
