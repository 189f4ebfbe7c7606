"""Tracing on the Kafka backend, exported by the real OTLP exporter of each worker to a real OTLP/HTTP
receiver (receiver.py): a cart request whose functions run on two workers is one trace, messages
crossing workers through <app>.messages carry their trace context, and a worker killed -9 in the middle
of a request leaves its trace to be finished by the other; a Kafka ingress record's ``traceparent``
header starts the trace of its messages."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from confluent_kafka import Producer

from e2e.processes import free_port, request
from kafka.conftest import kafka_bootstrap  # noqa: F401 - a fixture
from kafka.harness import Worker, counter_module, create_topics, read_all, unique, wait_until
from pystatefun.runtime.envelope import partition_of

from .conftest import otel_env
from .receiver import OtlpReceiver
from .test_otlp import CART, CART_EXAMPLE, STOCK, named, wait_for_file

APPS = Path(__file__).parent / "apps"
PARTITIONS = 4


def owned(worker: Worker) -> set[int]:
    """The partitions the worker runs, as its log tells them (assignments are incremental: it runs the
    partitions it was given and has not handed over)."""
    partitions: set[int] = set()
    for what, listed in re.findall(r"(runs|handed over) partitions \[([0-9, ]*)\]", worker.log.read_text()):
        changed = {int(p) for p in listed.split(",") if p.strip()}
        partitions = partitions | changed if what == "runs" else partitions - changed
    return partitions


def id_in(partitions: set[int], prefix: str) -> str:
    return next(f"{prefix}{n}" for n in range(1000) if partition_of(f"{prefix}{n}", PARTITIONS) in partitions)


def add_to_cart(port: int, user: str, sku: str, trace: str) -> int:
    headers = {"Content-Type": "application/vnd.com.example/AddToCart", "traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
    body = json.dumps({"sku": sku, "quantity": 1}).encode()
    return request(port, "PUT", f"/com.example/user-shopping-cart/{user}", body, headers, timeout=60).status


def test_a_request_across_two_workers_is_one_trace_even_when_one_is_killed_in_its_middle(tmp_path, kafka_bootstrap, receiver: OtlpReceiver):
    gate = tmp_path / "gate"
    app = unique("traced")
    ports = [free_port(), free_port()]
    workers = [
        Worker(APPS / "gated_cart_kafka.yaml", kafka_bootstrap, app, f"w{n}", tmp_path / f"w{n}.log", PARTITIONS,
               env={**otel_env(receiver), "INGRESS_PORT": str(port), "TRACING_TEST_GATE": str(gate),
                    "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id=w{n}",
                    "PYTHONPATH": os.pathsep.join([str(CART_EXAMPLE), os.environ.get("PYTHONPATH", "")])})
        for n, port in enumerate(ports)
    ]
    try:
        for worker in workers:
            worker.start()
        wait_until(lambda: owned(workers[0]) and owned(workers[1]) and owned(workers[0]) | owned(workers[1]) == set(range(PARTITIONS))
                   and not owned(workers[0]) & owned(workers[1]), "the two workers split the partitions")
        user, sku = id_in(owned(workers[0]), "user"), id_in(owned(workers[1]), "sku")

        # the cart runs on w0, the stock on w1: the messages between them go through <app>.messages
        first = "1" * 32
        assert add_to_cart(ports[1], user, sku, first) == 202
        spans = receiver.wait_for(first, lambda spans: len(named(spans, CART)) == 2 and named(spans, STOCK))
        assert {s.resource["service.instance.id"] for s in named(spans, CART)} == {"w0"}
        assert {s.resource["service.instance.id"] for s in named(spans, STOCK)} == {"w1"}
        (stock,) = named(spans, STOCK)
        carts = {s.span_id: s for s in named(spans, CART)}
        assert stock.parent_span_id in carts
        assert [s.parent_span_id for s in carts.values() if s.span_id != stock.parent_span_id] == [stock.span_id]

        # the stock waits at its gate on w1 when w1 is killed: w0 takes its partition over and runs the
        # message again from the log, in the same trace, as the child of the cart's span on w0
        second = "2" * 32
        gate.touch()
        assert add_to_cart(ports[0], user, sku, second) == 202
        assert int(wait_for_file(Path(f"{gate}.waiting"))) == workers[1].process.pid
        before = receiver.wait_for(second, lambda spans: named(spans, CART))
        workers[1].process.send_signal(signal.SIGKILL)
        workers[1].process.wait(10)
        gate.unlink()
        spans = receiver.wait_for(second, lambda spans: named(spans, STOCK) and len(named(spans, CART)) >= 2, timeout=120)
    finally:
        for worker in workers:
            worker.kill()
    (first_cart,) = named(before, CART)
    stocks = named(spans, STOCK)
    assert {s.resource["service.instance.id"] for s in stocks} == {"w0"}  # w1's invocation never ended
    assert {s.parent_span_id for s in stocks} == {first_cart.span_id}
    assert {s.trace_id for s in spans} == {second}


def test_a_kafka_ingress_record_with_a_traceparent_header_starts_its_trace(tmp_path, kafka_bootstrap, receiver: OtlpReceiver):
    source, out, app = unique("in"), unique("out"), unique("traced")
    create_topics(kafka_bootstrap, source, out)
    module = counter_module(tmp_path / "app", kafka_bootstrap, source)
    worker = Worker(module, kafka_bootstrap, app, "w0", tmp_path / "w0.log", PARTITIONS, env=otel_env(receiver))
    trace = "3" * 32
    try:
        worker.start()
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(source, out.encode(), b"k1", headers=[("traceparent", f"00-{trace}-00f067aa0ba902b7-01".encode())])
        assert producer.flush(30) == 0
        assert len(read_all(kafka_bootstrap, out, 1)) == 1
        spans = receiver.wait_for(trace, lambda spans: {s.name for s in spans} >= {
            f"process {source}", "invoke kc/counter", "egress kc/out"})
    finally:
        worker.kill()
    (ingress,) = named(spans, f"process {source}")
    (counter,) = named(spans, "invoke kc/counter")
    (egress,) = named(spans, "egress kc/out")
    assert ingress.parent_span_id == "00f067aa0ba902b7"
    assert ingress.attributes["messaging.destination.name"] == source
    assert ingress.attributes["pystatefun.targets"] == ["kc/counter/k1"]
    assert counter.parent_span_id == ingress.span_id
    assert egress.parent_span_id == counter.span_id
    assert egress.attributes["pystatefun.egress.topic"] == out
