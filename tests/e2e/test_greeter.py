"""The playground greeter through the real HTTP ingress and egress, in three forms: our SDK embedded,
our SDK served remotely, and the official apache-flink-statefun SDK served remotely."""

import json

import pytest

from .conftest import EXAMPLES, FORMS, Deployment
from .processes import Runtime

GREETER = EXAMPLES / "greeter"


@pytest.fixture(params=FORMS)
def greeter(request, tmp_path):
    official = request.getfixturevalue("official_python") if request.param == "remote-official" else None
    deployment = Deployment(request.param, GREETER, "greeter:functions", tmp_path / "data", official)
    yield deployment.runtime
    deployment.stop()


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
