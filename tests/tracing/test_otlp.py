"""Tracing of a real ``pystatefun run`` process, configured by OTEL_* variables only, exporting with the
real OTLP exporter to a real OTLP/HTTP receiver (receiver.py): one cart request is one trace through every
function it reaches, even when the process is killed -9 in the middle of it and started again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from e2e.processes import Runtime, request

from .conftest import otel_env
from .receiver import OtlpReceiver, ReceivedSpan

APPS = Path(__file__).parent / "apps"
CART_EXAMPLE = Path(__file__).parents[2] / "examples" / "shopping-cart"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CART, STOCK = "invoke com.example/user-shopping-cart", "invoke com.example/stock"


def wait_for_file(path: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)
    return path.read_text()


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def gated_env(receiver: OtlpReceiver, gate: Path) -> dict[str, str]:
    return {**otel_env(receiver), "TRACING_TEST_GATE": str(gate),
            "PYTHONPATH": os.pathsep.join([str(CART_EXAMPLE), os.environ.get("PYTHONPATH", "")])}


def add_to_cart(runtime: Runtime, user: str, sku: str, traceparent: str | None = None) -> int:
    headers = {"Content-Type": "application/vnd.com.example/AddToCart"}
    if traceparent:
        headers["traceparent"] = traceparent
    body = json.dumps({"sku": sku, "quantity": 1}).encode()
    return request(runtime.ingress_port, "PUT", f"/com.example/user-shopping-cart/{user}", body, headers).status


def test_a_request_is_one_trace_across_a_kill_9_in_its_middle(tmp_path, receiver):
    """The stock's invocation waits at its gate when the process is killed: the cart's span is exported,
    the message to the stock is in the inbox with its trace context, and the restarted process runs it as
    the child of the cart's span from before the crash."""
    gate = tmp_path / "gate"
    runtime = Runtime(APPS / "gated_cart.yaml", tmp_path / "data", env=gated_env(receiver, gate),
                      args=("--log-level", "warning", "--log-format", "json"))
    try:
        runtime.start()
        reply = runtime.send("/com.example/stock/socks", "com.example/RestockItem", b'{"quantity": 5}')
        assert reply.status == 202
        gate.touch()
        assert add_to_cart(runtime, "alice", "socks", f"00-{TRACE}-00f067aa0ba902b7-01") == 202
        wait_for_file(Path(f"{gate}.waiting"))
        before = receiver.wait_for(TRACE, lambda spans: named(spans, CART))
        runtime.kill()
        gate.unlink()
        log = runtime.log.read_text()
        runtime.start()
        spans = receiver.wait_for(TRACE, lambda spans: named(spans, STOCK) and len(named(spans, CART)) >= 2)
    finally:
        runtime.kill()
    (first_cart,) = named(before, CART)
    (ingress,) = named(spans, "PUT /com.example/user-shopping-cart/{id}")
    assert ingress.parent_span_id == "00f067aa0ba902b7"
    assert first_cart.parent_span_id == ingress.span_id
    (stock,) = named(spans, STOCK)  # the invocation killed in the middle never ended: no span
    assert stock.parent_span_id == first_cart.span_id
    assert stock.attributes["pystatefun.outcome"] == "ok"
    assert [s.parent_span_id for s in named(spans, CART) if s is not first_cart] == [stock.span_id]
    assert {s.resource["service.name"] for s in spans} == {"pystatefun-test"}
    # the function's log line, written in its invocation, carries the trace id
    waited = [json.loads(line) for line in log.splitlines() if "waits at its gate" in line]
    assert [line.get("trace_id") for line in waited] == [TRACE]


def test_an_unconfigured_process_exports_nothing_and_answers_as_usual(tmp_path, receiver):
    env = {"TRACING_TEST_GATE": str(tmp_path / "no-gate"),
           "PYTHONPATH": os.pathsep.join([str(CART_EXAMPLE), os.environ.get("PYTHONPATH", "")]),
           # the receiver's address is known, but no exporter is configured: tracing is off
           "OTEL_SERVICE_NAME": "pystatefun-test", "OTEL_TRACES_EXPORTER": "none",
           "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    runtime = Runtime(APPS / "gated_cart.yaml", tmp_path / "data", env=env)
    try:
        runtime.start()
        assert add_to_cart(runtime, "bob", "hat", f"00-{TRACE}-00f067aa0ba902b7-01") == 202
        reply = runtime.send("/com.example/user-shopping-cart/bob?wait=10", "com.example/Checkout", b"{}")
        assert reply.status == 200
    finally:
        runtime.stop()  # (an exit flushes the spans a configured process has not exported yet)
    assert receiver.requests == 0
