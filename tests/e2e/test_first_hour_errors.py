"""Failures at the edges that explain themselves (issue 20): a user module that does not import, as one
line naming the module, the exception and its file and line, with the traceback only at debug."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pystatefun import StringType

from .processes import Runtime, free_port, request

BROKEN_MODULES = {
    "name-error": ("from pystatefun import StatefulFunctions\nfunctions = StatefulFunctions()\nprint(x)\n",
                   "NameError: name 'x' is not defined", 3),
    "import-name": ("from json import no_such_thing\n",
                    f"ImportError: cannot import name 'no_such_thing' from 'json' ({json.__file__})", 1),
    "raises-in-a-function": ("def setup():\n    raise RuntimeError('no config')\n\nsetup()\n",
                             "RuntimeError: no config", 2),
    "sys-exit": ("import sys\nsys.exit('stop here')\n", "SystemExit: stop here", 2),
}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pystatefun.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def embedded_module(folder: Path, module: str) -> Path:
    path = folder / "module.yaml"
    path.write_text(f"kind: pystatefun.v1/embedded\nspec:\n  functions: example/*\n  module: {module}:functions\n")
    return path


@pytest.mark.parametrize("case", list(BROKEN_MODULES))
def test_a_module_that_raises_on_import_is_one_line_naming_module_exception_file_and_line(tmp_path, case):
    source, exception, line = BROKEN_MODULES[case]
    module = f"broken_{case.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(source)
    yaml = embedded_module(tmp_path, module)
    run = cli("run", str(yaml), "--data-dir", str(tmp_path / "data"), "--admin-port", "0", cwd=tmp_path)
    serve = cli("serve", f"{module}:functions", "--port", "0", cwd=tmp_path)
    where = f"({tmp_path / (module + '.py')}, line {line})"
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        f"Error: cannot import module {module!r} (from {yaml}): {exception} {where}")
    assert serve.returncode == 1
    assert serve.stderr.strip().splitlines()[-1] == f"Error: cannot import module {module!r}: {exception} {where}"
    assert "Traceback" not in run.stderr + serve.stderr


def test_the_traceback_of_an_import_error_is_logged_at_debug(tmp_path):
    (tmp_path / "broken_debug.py").write_text("import json\njson.loads('{')\n")
    yaml = embedded_module(tmp_path, "broken_debug")
    run = cli("run", str(yaml), "--data-dir", str(tmp_path / "data"), "--admin-port", "0", "--log-level", "debug",
              cwd=tmp_path)
    assert run.returncode == 1
    # the line the user wrote, not the library's, though the library raised
    assert f"JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1) " \
           f"({tmp_path / 'broken_debug.py'}, line 2)" in run.stderr
    assert "Traceback (most recent call last)" in run.stderr and "json/decoder.py" in run.stderr


GREETER = Path(__file__).parents[2] / "examples" / "greeter" / "module.yaml"
COUNTER_APP = Path(__file__).parent / "apps" / "counter" / "module.yaml"


@pytest.mark.parametrize("taken", ["ingress", "admin"])
def test_a_port_in_use_is_the_first_and_only_thing_said_naming_the_component_and_the_setting(tmp_path, taken):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ports = {"INGRESS_PORT": str(port if taken == "ingress" else free_port()), "EGRESS_PORT": str(free_port())}
        admin = str(port if taken == "admin" else free_port())
        result = subprocess.run([sys.executable, "-m", "pystatefun.cli", "run", str(GREETER), "--data-dir",
                                 str(tmp_path / "data"), "--admin-port", admin], capture_output=True, text=True,
                                timeout=60, env={**os.environ, **ports})
    said = {
        "ingress": f"the playground ingress cannot listen on 127.0.0.1:{port}: address already in use; change its "
                   "port in module.yaml (INGRESS_PORT in the examples)",
        "admin": f"the admin API cannot listen on 127.0.0.1:{port}: address already in use; change it with "
                 "--admin-port (0 turns the admin API off)",
    }[taken]
    assert result.returncode == 1
    assert result.stderr.splitlines()[1:] == [f"Error: cannot start: {said}"]  # after only "pystatefun running ..."


def test_pystatefun_serve_on_a_port_in_use_says_which_and_what_to_change():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "pystatefun.cli", "serve", "counter:functions", "--port", str(port)],
                                cwd=COUNTER_APP.parent, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (f"Error: the function endpoint cannot listen on 127.0.0.1:{port}: "
                                              "address already in use; change it with --port")


def test_a_restart_says_how_many_messages_resume_and_how_many_addresses_are_parked(tmp_path):
    runtime = Runtime(COUNTER_APP, tmp_path / "data", args=("--log-level", "info")).start()
    try:
        assert runtime.send("/crash/fragile/p", "io.statefun.types/string", StringType.serializer().serialize("poison")).status == 202
        for _ in range(200):  # bounded: parks at its first failure (an embedded function)
            if json.loads(request(runtime.admin_port, "GET", "/parked").body):
                break
            time.sleep(0.05)
    finally:
        runtime.stop()
    runtime.start()
    runtime.stop()
    restarted = runtime.log.read_text().split("stopped: the last epoch is committed")[1]
    assert ", 1 message to resume, 0 timers pending, 1 address parked (pystatefun parked lists them)" in restarted
