"""State inspection and repair through the admin API, read back by the function itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pystatefun import StringType

from .processes import Runtime, request

APP = Path(__file__).parent / "apps" / "counter"


@pytest.fixture
def app(tmp_path):
    runtime = Runtime(APP / "module.yaml", tmp_path / "data").start()
    yield runtime
    runtime.stop()


def admin(runtime: Runtime, method: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else b""
    reply = request(runtime.admin_port, method, path, data, {"Content-Type": "application/json"} if body else None)
    return reply.status, json.loads(reply.body)


def count(runtime: Runtime, key: str, message: str) -> int:
    body = StringType.serializer().serialize(message)
    assert runtime.send(f"/crash/counter/{key}", "io.statefun.types/string", body).status == 202
    return json.loads(runtime.take("counts", wait=10).body)["count"]


def test_state_is_shown_repaired_and_read_back_by_the_function(app):
    assert count(app, "k", "m1") == 1
    status, shown = admin(app, "GET", "/state/crash/counter/k")
    assert status == 200
    assert shown == {"address": "crash/counter/k", "state": {"count": {
        "typename": "io.statefun.types/int", "value_base64": "DQEAAAA=", "value": 1, "expires_at_ms": None}}}

    status, shown = admin(app, "PUT", "/state/crash/counter/k", {"count": {"value": 41}})
    assert status == 200 and shown["state"]["count"]["value"] == 41
    assert count(app, "k", "m2") == 42  # the function reads the repaired value

    app.kill()  # the repair was committed
    app.start()
    assert admin(app, "GET", "/state/crash/counter/k")[1]["state"]["count"]["value"] == 42

    assert admin(app, "DELETE", "/state/crash/counter/k") == (200, {"address": "crash/counter/k", "state": {}})
    assert count(app, "k", "m3") == 1


def test_bad_state_requests_say_what_to_fix(app):
    count(app, "k", "m1")
    status, error = admin(app, "PUT", "/state/crash/counter/k", {"cuont": {"value": 1}})
    assert status == 400 and "no state 'cuont'" in error["error"] and "count" in error["error"]
    status, error = admin(app, "PUT", "/state/crash/counter/k", {"count": {"value": "many"}})
    assert status == 400 and "io.statefun.types/int" in error["error"]
    status, error = admin(app, "PUT", "/state/crash/counter/k", {"count": {"value_base64": "%%%"}})
    assert status == 400 and "base64" in error["error"]
    status, error = admin(app, "PUT", "/state/crash/counter/k", {"count": 5})
    assert status == 400 and "exactly one of 'value'" in error["error"]
    assert admin(app, "GET", "/state/crash/nobody/k")[0] == 404
    assert admin(app, "GET", "/state/crash/counter/k")[1]["state"]["count"]["value"] == 1  # unchanged
