"""The console's observation routes on the Kafka backend: two real worker processes on a real broker,
and either one answers GET /graph, GET /overview and GET /functions/{ns}/{type} for the whole
application -- the flows, rates, partitions, ingress lag, parked addresses and dead letters of both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e.processes import free_port, request
from kafka.harness import KeyedRecords, Worker, counter_module, create_topics, produce, sharing, unique, wait_until

PARTITIONS = 4
RECORDS = 200

# the Kafka counter of the other tests (kc/in -> kc/counter -> kc/out), and a function that always fails
FAILS = '''

@functions.bind("kc/fails")
def fails(context, message):
    raise RuntimeError("this function always fails")
'''


def module(folder: Path, bootstrap: str, source: str) -> Path:
    path = counter_module(folder, bootstrap, source)
    with (folder / "counter.py").open("a") as functions:
        functions.write(FAILS)
    with path.open("a") as text:  # the playground ingress only: its egress is the embedded backend's
        text.write("---\nkind: io.statefun.playground.v1/ingress\nspec:\n  port: ${INGRESS_PORT}\n")
    return path


class App:
    def __init__(self, folder: Path, bootstrap: str):
        self.name = unique("console")
        self.source, out = unique("source"), unique("out")
        create_topics(bootstrap, self.source, out, partitions=PARTITIONS)
        self.records = KeyedRecords(bootstrap, self.source, out, partitions=PARTITIONS)
        path = module(folder, bootstrap, self.source)
        self.ingress_ports = [free_port(), free_port()]
        self.workers = [Worker(path, bootstrap, self.name, f"w{n}", folder / f"w{n}.log", PARTITIONS,
                               env={"INGRESS_PORT": str(port)}) for n, port in enumerate(self.ingress_ports)]

    def get(self, worker: int, path: str) -> dict:
        reply = request(self.workers[worker].admin_port, "GET", path, timeout=60)
        assert reply.status == 200, reply
        return json.loads(reply.body)



@pytest.fixture
def app(tmp_path, kafka_bootstrap):
    app = App(tmp_path, kafka_bootstrap)
    with sharing(app.workers, PARTITIONS):
        yield app


def flows(app: App, worker: int) -> dict[tuple[str, str], int]:
    return {(edge["from"], edge["to"]): edge["messages"] for edge in app.get(worker, "/graph")["edges"]}


def test_any_worker_answers_for_the_whole_application(app):
    app.records.send(RECORDS)
    # half of the records are read by the worker that does not run their address: they cross to the other
    # through <app>.messages, and are counted once, by the worker that read them
    expected = {("ingress:kc/in", "function:kc/counter"): RECORDS, ("function:kc/counter", "egress:kc/out"): RECORDS}
    wait_until(lambda: flows(app, 0) == expected, "every record's flows counted")
    for worker in (0, 1):  # the rates are of the last 10 s: read right after the traffic
        overview = app.get(worker, "/overview")
        assert overview["ingress_per_s"] > 0 and overview["egress_per_s"] > 0 and overview["epochs_per_s"] > 0
        assert overview["messages_per_s"] == overview["ingress_per_s"]  # the counter sends no messages
        assert 0 < overview["commit_latency_ms"]["p50"] <= overview["commit_latency_ms"]["p99"]
    app.records.check()  # and each count reached the egress once

    for worker in (0, 1):
        assert flows(app, worker) == expected
        nodes = {node["id"] for node in app.get(worker, "/graph")["nodes"]}
        assert nodes == {"ingress:kc/in", "ingress:io.statefun.playground/ingress", "egress:kc/out",
                         "function:kc/counter", "function:kc/fails"}

        overview = app.get(worker, "/overview")
        assert (overview["backend"], overview["application"], overview["partitions"]) == ("kafka", app.name, PARTITIONS)
        workers = overview["workers"]
        assert [w["worker"] for w in workers] == ["w0", "w1"]
        assert sorted(p for w in workers for p in w["partitions"]) == list(range(PARTITIONS))
        assert [w["admin"] for w in workers] == [f"http://127.0.0.1:{w.admin_port}" for w in app.workers]
        # each partition of the ingress topic, read by the worker that runs the partition it goes with
        assert [(entry["ingress"], entry["topic"], entry["partition"]) for entry in overview["lag"]] == [
            ("kc/in", app.source, partition) for partition in range(PARTITIONS)]
        assert all(entry["lag"] == 0 for entry in overview["lag"])  # read to the end
        assert (overview["parked"], overview["dead_letters"]) == (0, 0)

        counter = app.get(worker, "/functions/kc/counter")
        assert (counter["endpoint"], counter["health"], counter["failures"]) == ("embedded", "ok", 0)
        assert round(counter["batch_size"]["mean"] * counter["calls"]) == RECORDS  # the batches of both workers
        assert counter["addresses"] == len(app.records.sent)  # the keys, spread over both workers

    # a failure on one worker: parked, then skipped to the dead letters, seen through either worker
    reply = request(app.ingress_ports[0], "PUT", "/kc/fails/x", b"boom", {"Content-Type": "application/vnd.kc/any"})
    assert reply.status == 202, reply
    wait_until(lambda: app.get(1, "/overview")["parked"] == 1, "the failing address is parked")
    assert app.get(0, "/functions/kc/fails")["failures"] >= 1
    reply = request(app.workers[1].admin_port, "POST", "/parked/kc/fails/x/skip", timeout=60)
    assert reply.status == 200, reply
    for worker in (0, 1):  # one dead letter however many transactions (and their markers) the topic has
        overview = app.get(worker, "/overview")
        assert (overview["parked"], overview["dead_letters"]) == (0, 1)

    # a record without a key stops its partition (badRecords: fail): what comes after it is its lag
    produce(app.records.bootstrap, app.source, [(None, b"no key", 0), *[(b"k0", b"unread", 0)] * 5])
    for worker in (0, 1):
        wait_until(lambda: [entry["lag"] for entry in app.get(worker, "/overview")["lag"]] == [6, 0, 0, 0],
                   f"worker {worker} shows the stopped partition's lag")
