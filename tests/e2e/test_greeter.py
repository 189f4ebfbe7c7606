"""The playground greeter through the real HTTP ingress and egress, in three forms: our SDK embedded,
our SDK served remotely, and the official apache-flink-statefun SDK served remotely."""

import json

import pytest

from .conftest import EXAMPLES, official_server, our_server
from .processes import Runtime

GREETER = EXAMPLES / "greeter"


@pytest.fixture(params=["embedded", "remote-pystatefun", "remote-official"])
def greeter(request, tmp_path):
    server = None
    if request.param == "embedded":
        runtime = Runtime(GREETER / "module.yaml", tmp_path / "data")
    else:
        if request.param == "remote-pystatefun":
            server = our_server(GREETER, "greeter:functions")
        else:
            server = official_server(request.getfixturevalue("official_python"), GREETER, "greeter:functions")
        server.start()
        runtime = Runtime(GREETER / "module-remote.yaml", tmp_path / "data", env={"FUNCTIONS_PORT": str(server.port)})
    runtime.start()
    yield runtime
    runtime.stop()
    if server:
        server.stop()


def greet(runtime: Runtime, name: str):
    return runtime.send(f"/example/person/{name}", "example/GreetRequest", json.dumps({"name": name}).encode())


def test_greetings_count_visits(greeter):
    assert greet(greeter, "Bob").status == 202
    assert greet(greeter, "Bob").status == 202
    assert greet(greeter, "Alice").status == 202
    greetings = sorted(greeter.take("greetings", wait=10).body.decode() for _ in range(3))
    assert greetings == ["Nice to see you again Bob", "Welcome Alice", "Welcome Bob"]
    assert greeter.take("greetings").status == 404  # each record appears once


def test_state_survives_a_restart(greeter):
    assert greet(greeter, "Bob").status == 202
    assert greeter.take("greetings", wait=10).body == b"Welcome Bob"
    greeter.kill()
    greeter.start()
    assert greet(greeter, "Bob").status == 202
    assert greeter.take("greetings", wait=10).body == b"Nice to see you again Bob"
