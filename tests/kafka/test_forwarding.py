"""Any worker of a Kafka-backend application answers any request: request/reply, idempotent retries and
the admin API's per-address routes go to the worker owning the address, listings cover every worker.
Two real worker processes on a real broker; the requests go over HTTP to one worker or the other."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from e2e.processes import free_port, request
from kafka.harness import Worker, sharing, unique, wait_until
from pystatefun.runtime.envelope import partition_of

PARTITIONS = 4
IDS = [f"k{n}" for n in range(16)]

FUNCTIONS = '''
from pystatefun import IntType, StatefulFunctions, ValueSpec, make_json_type

functions = StatefulFunctions()
COUNT = make_json_type("fw/count")


@functions.bind("fw/counter", specs=[ValueSpec("count", IntType)])
def counter(context, message):
    context.storage.count = (context.storage.count or 0) + 1
    if context.caller is not None:
        context.reply(value=context.storage.count, value_type=COUNT)


@functions.bind("fw/fails")
def fails(context, message):
    raise RuntimeError("this function always fails")
'''

MODULE = """\
kind: pystatefun.v1/embedded
spec:
  functions: fw/*
  module: functions:functions
---
kind: io.statefun.playground.v1/ingress
spec:
  port: ${INGRESS_PORT}
"""


class App:
    """Two workers of one application, each with its own ingress and admin port."""

    def __init__(self, folder: Path, bootstrap: str):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "functions.py").write_text(FUNCTIONS)
        module = folder / "module.yaml"
        module.write_text(MODULE)
        app = unique("fw")
        self.ingress_ports = [free_port(), free_port()]
        self.workers = [Worker(module, bootstrap, app, f"w{n}", folder / f"w{n}.log", PARTITIONS,
                               env={"INGRESS_PORT": str(port)}) for n, port in enumerate(self.ingress_ports)]

    def send(self, worker: int, id: str, key: str | None = None, wait: bool = True, function: str = "fw/counter"):
        headers = {"Content-Type": "application/vnd.fw/tick"}
        if key is not None:
            headers["Idempotency-Key"] = key
        path = f"/{function}/{id}" + ("?wait=20" if wait else "")
        return request(self.ingress_ports[worker], "PUT", path, b"tick", headers, timeout=60)

    def admin(self, worker: int, method: str, path: str, body: dict | None = None):
        data = b"" if body is None else json.dumps(body).encode()
        return request(self.workers[worker].admin_port, method, path, data, {"Content-Type": "application/json"}, timeout=60)



@pytest.fixture
def app(tmp_path, kafka_bootstrap):
    app = App(tmp_path, kafka_bootstrap)
    with sharing(app.workers, PARTITIONS):
        yield app


def test_request_reply_and_retries_are_answered_by_any_worker(app):
    assert {partition_of(id, PARTITIONS) for id in IDS} == set(range(PARTITIONS))  # both workers are asked for both
    for id in IDS:
        first = app.send(0, id, key=f"first-{id}")
        assert (first.status, first.body) == (200, b"1"), first
        assert first.headers["Content-Type"] == "application/vnd.fw/count"
        again = app.send(1, id, key=f"first-{id}")  # a retry through the other worker: the same answer
        assert (again.status, again.body) == (200, b"1"), again
        second = app.send(1, id, key=f"second-{id}")
        assert (second.status, second.body) == (200, b"2"), second
    for id in IDS:  # the retries were not applied again, whichever worker holds the address
        for worker in (0, 1):
            shown = app.admin(worker, "GET", f"/state/fw/counter/{id}")
            assert shown.status == 200, shown
            assert json.loads(shown.body)["state"]["count"]["value"] == 2


def test_admin_routes_and_listings_cover_every_worker(app):
    for id in IDS:
        assert app.send(0, id).status == 200
    for id in IDS:  # state repair through either worker, read by the function on its owner
        assert app.admin(1, "PUT", f"/state/fw/counter/{id}", {"count": {"value": 10}}).status == 200
        assert app.send(0, id).body == b"11"
    listed, path = [], "/addresses/fw/counter?limit=5"
    while path:  # pages merged from both workers, in order
        page = json.loads(app.admin(0, "GET", path).body)
        listed += page["ids"]
        path = page.get("next")
    assert listed == sorted(IDS)

    failing = [f"f{n}" for n in range(6)]
    for id in failing:
        assert app.send(0, id, wait=False, function="fw/fails").status == 202
    wait_until(lambda: {p["address"] for p in json.loads(app.admin(1, "GET", "/parked").body)}
               == {f"fw/fails/{id}" for id in failing}, "every failing address listed as parked by worker 1")
    parked = json.loads(app.admin(0, "GET", "/parked").body)
    assert [p["address"] for p in parked] == [f"fw/fails/{id}" for id in failing]
    for id in failing:  # skipped through worker 0, wherever the address is
        skipped = app.admin(0, "POST", f"/parked/fw/fails/{id}/skip")
        assert skipped.status == 200, skipped
    assert json.loads(app.admin(1, "GET", "/parked").body) == []

    assert app.send(1, "x", wait=False, function="fw/unknown").status == 202
    expected = sorted(["fw/unknown/x", *(f"fw/fails/{id}" for id in failing)])
    for worker in (0, 1):  # every dead letter, from the topic, on any worker
        # accepted means routed: the owner of x's partition may turn it into a dead letter an epoch later
        wait_until(lambda: sorted(letter["target"] for letter in json.loads(app.admin(worker, "GET", "/dead-letters").body))
                   == expected, f"worker {worker} lists every dead letter")
        letters = json.loads(app.admin(worker, "GET", "/dead-letters").body)
        assert {letter["value_base64"] for letter in letters} == {"dGljaw=="}  # b"tick"
        assert all(letter["reason"] for letter in letters)
        after = letters[2]["seq"]
        assert json.loads(app.admin(worker, "GET", f"/dead-letters?after={after}&limit=2").body) == letters[3:5]


def test_requests_wait_out_a_rebalance_when_an_owner_dies(app):
    for id in IDS:
        assert app.send(0, id, key=f"before-{id}").status == 200
    app.workers[1].kill()
    for id in IDS:  # worker 0 takes the dead worker's partitions over; requests meanwhile wait or are refused
        deadline = time.monotonic() + 60
        while (answer := app.send(0, id, key=f"after-{id}")).status == 503:
            assert time.monotonic() < deadline, answer
            time.sleep(0.5)
        assert (answer.status, answer.body) == (200, b"2"), answer
