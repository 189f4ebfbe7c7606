"""The rest of the admin API: functions and endpoint health, address listing, delayed messages, the
OpenAPI document, the bearer token; and JSON logs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pystatefun import IntType, StringType

from .conftest import EXAMPLES, our_server
from .processes import Runtime, request

APP = Path(__file__).parent / "apps" / "counter"
STRING = "io.statefun.types/string"


def admin(runtime: Runtime, method: str, path: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    reply = request(runtime.admin_port, method, path, b"", headers)
    return reply.status, json.loads(reply.body)


def count(runtime: Runtime, key: str) -> None:
    assert runtime.send(f"/crash/counter/{key}", STRING, StringType.serializer().serialize(key)).status == 202


def test_functions_addresses_delayed_messages_and_openapi(tmp_path):
    runtime = Runtime(APP / "module.yaml", tmp_path / "data").start()
    try:
        for key in ("a", "b", "c"):
            count(runtime, key)
        for _ in range(3):
            assert runtime.take("counts", wait=10).status == 200
        status, bindings = admin(runtime, "GET", "/functions")
        assert status == 200
        (binding,) = bindings
        assert binding["kind"] == "embedded" and binding["functions"] == "crash/*"
        assert binding["function_types"]["crash/counter"] == {"count": {"typename": "io.statefun.types/int", "expire_after_ms": None}}

        assert admin(runtime, "GET", "/addresses/crash/counter?limit=2") == (
            200, {"function_type": "crash/counter", "ids": ["a", "b"], "next": "/addresses/crash/counter?after=b&limit=2"})
        assert admin(runtime, "GET", "/addresses/crash/counter?after=b&limit=2") == (
            200, {"function_type": "crash/counter", "ids": ["c"]})
        assert admin(runtime, "GET", "/addresses/crash/nobody")[0] == 404

        status, document = admin(runtime, "GET", "/openapi.json")
        assert status == 200 and document["openapi"].startswith("3.")
        served = {"/health", "/metrics", "/functions", "/parked", "/dead-letters", "/state/{namespace}/{type}/{id}"}
        assert served <= set(document["paths"])

        status, index = admin(runtime, "GET", "/")  # opening the API's address: a map, not a bare 404
        assert status == 200 and index["openapi"] == "/openapi.json"
        assert {"method": "GET", "path": "/parked", "summary": document["paths"]["/parked"]["get"]["summary"]} in index["routes"]
        assert {r["path"] for r in index["routes"]} == set(document["paths"])
    finally:
        runtime.stop()


def test_cancelling_a_delayed_message_through_the_api_keeps_it_from_firing(tmp_path):
    """A far-off delayed message: listed, cancelled, and after a restart still gone."""
    runtime = Runtime(APP / "module.yaml", tmp_path / "data").start()
    try:
        # crash/slow-answer replies to its caller after N seconds: ask for a 3,600 s answer, never wait
        assert runtime.send("/crash/slow-answer/s?wait=0.1", "io.statefun.types/int", IntType.serializer().serialize(3600)).status == 504
        status, pending = admin(runtime, "GET", "/delayed/crash/slow-answer/s")
        assert status == 200 and len(pending) == 1 and pending[0]["value"] == 1
        assert pending[0]["due_at_ms"] > (time.time() + 3000) * 1000 and pending[0]["target"].startswith("pystatefun/reply/")
        assert admin(runtime, "DELETE", f"/delayed/crash/slow-answer/s/{pending[0]['timer_id']}")[0] == 200
        runtime.kill()
        runtime.start()
        assert admin(runtime, "GET", "/delayed/crash/slow-answer/s") == (200, [])
    finally:
        runtime.stop()


def test_remote_endpoint_health(tmp_path):
    greeter = EXAMPLES / "greeter"
    server = our_server(greeter, "greeter:functions").start()
    runtime = Runtime(greeter / "module-remote.yaml", tmp_path / "data", env={"FUNCTIONS_PORT": str(server.port)}).start()
    try:
        (binding,) = admin(runtime, "GET", "/functions")[1]
        assert binding["kind"] == "remote" and binding["health"]["status"] == "unknown"
        assert runtime.send("/example/person/Bob", "example/GreetRequest", b'{"name": "Bob"}').status == 202
        assert runtime.take("greetings", wait=10).status == 200
        (binding,) = admin(runtime, "GET", "/functions")[1]
        assert binding["health"]["status"] == "ok"
        assert set(binding["function_types"]) == {"example/person", "example/greeter"}
    finally:
        runtime.stop()
        server.stop()


def test_a_bearer_token_guards_everything_but_health_and_metrics(tmp_path):
    runtime = Runtime(APP / "module.yaml", tmp_path / "data", args=("--log-level", "warning", "--admin-token", "s3cret")).start()
    try:
        assert admin(runtime, "GET", "/health")[0] == 200
        status, error = admin(runtime, "GET", "/parked")
        assert status == 401 and "Bearer" in error["error"]
        assert admin(runtime, "GET", "/parked", token="wrong")[0] == 401
        assert admin(runtime, "GET", "/parked", token="s3cret") == (200, [])
        assert admin(runtime, "GET", "/state/crash/counter/a")[0] == 401
        # a browser: the console asks for the token as a Basic password, which then travels in a header
        console = request(runtime.admin_port, "GET", "/ui/")
        assert console.status == 401 and console.headers["WWW-Authenticate"].startswith("Basic ")
        assert request(runtime.admin_port, "GET", "/ui/static/app.js").status == 401
        basic = {"Authorization": "Basic " + base64.b64encode(b"anyone:s3cret").decode()}
        assert request(runtime.admin_port, "GET", "/ui/", b"", basic).status == 200
        assert request(runtime.admin_port, "GET", "/parked", b"", basic).status == 200
        wrong = {"Authorization": "Basic " + base64.b64encode(b"anyone:wrong").decode()}
        assert request(runtime.admin_port, "GET", "/parked", b"", wrong).status == 401
        assert request(runtime.admin_port, "GET", "/parked", b"", {"Authorization": "Basic %%%"}).status == 401
        assert request(runtime.admin_port, "GET", "/parked").headers["WWW-Authenticate"].startswith("Bearer ")  # no prompt
        # Prometheus scrapes without the token: the metrics show no state and change nothing
        scraped = request(runtime.admin_port, "GET", "/metrics")
        assert scraped.status == 200 and b"pystatefun_epochs_committed" in scraped.body
        cli = [sys.executable, "-m", "pystatefun.cli", "parked", "--admin", f"http://127.0.0.1:{runtime.admin_port}"]
        environment = {k: v for k, v in os.environ.items() if k != "PYSTATEFUN_ADMIN_TOKEN"}
        refused = subprocess.run(cli, capture_output=True, text=True, timeout=30, env=environment)
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr
        allowed = subprocess.run([*cli, "--token", "s3cret"], capture_output=True, text=True, timeout=30, env=environment)
        assert allowed.returncode == 0, allowed.stderr
        # the variable `pystatefun run` takes its token from is the one the CLI reads: set once, no typing
        found = subprocess.run(cli, capture_output=True, text=True, timeout=30,
                               env={**environment, "PYSTATEFUN_ADMIN_TOKEN": "s3cret"})
        assert found.returncode == 0, found.stderr
    finally:
        runtime.stop()


def test_json_logs_carry_the_address_and_invocation(tmp_path):
    runtime = Runtime(APP / "module.yaml", tmp_path / "data", args=("--log-level", "info", "--log-format", "json")).start()
    try:
        assert runtime.send("/crash/fragile/p", STRING, StringType.serializer().serialize("poison")).status == 202
        for _ in range(100):
            if admin(runtime, "GET", "/parked")[1]:
                break
    finally:
        runtime.stop()
    lines = [json.loads(line) for line in runtime.log.read_text().splitlines() if line.startswith("{")]
    assert any(line["message"].startswith("playground ingress") for line in lines)
    (parking,) = [line for line in lines if line["message"].startswith("parking")]
    assert parking["level"] == "error" and parking["address"] == "crash/fragile/p"
    assert isinstance(parking["invocation"], int) and "cannot digest poison" in parking["message"]
