"""Tracing on the embedded backend, in process, with the SDK's in-memory exporter: one request's spans
form one trace through every function it reaches, its egress records, its delayed messages and its
messages that wait in the inbox across a restart; remote functions get the traceparent header.

Each test runs an Application (what ``pystatefun run`` runs) over a real module and data dir, and sends
its requests to the real playground ingress over HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import typing
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from e2e.processes import free_port
from pystatefun import IntType
from pystatefun.app import Application
from pystatefun.config import load_module
from pystatefun.runtime.envelope import address
from pystatefun.serving.handler import RequestReplyHandler
from pystatefun.tracing.spans import TraceIds

EXAMPLES = Path(__file__).parents[2] / "examples"
APPS = Path(__file__).parent / "apps"
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    chosen = {"INGRESS_PORT": free_port(), "EGRESS_PORT": free_port(), "FUNCTIONS_PORT": free_port()}
    for name, port in chosen.items():
        monkeypatch.setenv(name, str(port))
    return chosen


async def put(port: int, path: str, typename: str, value: typing.Any, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """PUTs a message to the ingress: an int as the int type's bytes, anything else as JSON."""
    body = IntType.serializer().serialize(value) if isinstance(value, int) else json.dumps(value).encode()
    async with aiohttp.ClientSession() as session:
        async with session.put(f"http://127.0.0.1:{port}{path}", data=body,
                               headers={"Content-Type": f"application/vnd.{typename}", **(headers or {})}) as response:
            return response.status, await response.read()


async def spans_until(exporter: typing.Any, done: typing.Callable[[list[ReadableSpan]], bool], timeout: float = 30.0) -> list[ReadableSpan]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        spans = list(exporter.get_finished_spans())
        if done(spans):
            return spans
        assert asyncio.get_running_loop().time() < deadline, f"spans so far: {[s.name for s in spans]}"
        await asyncio.sleep(0.02)


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def invokes(spans: list[ReadableSpan], typename: str) -> list[ReadableSpan]:
    return named(spans, f"invoke {typename}")


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


CART, STOCK = "com.example/user-shopping-cart", "com.example/stock"


def test_one_cart_request_is_one_trace_through_every_function_it_reached(tmp_path, ports, tracing, exporter):
    async def scenario() -> None:
        app = Application(load_module(EXAMPLES / "shopping-cart" / "module.yaml"), tmp_path / "data", tracing=tracing)
        await app.start()
        try:
            port = ports["INGRESS_PORT"]
            assert (await put(port, "/com.example/stock/socks", "com.example/RestockItem", {"quantity": 3}))[0] == 202
            await spans_until(exporter, lambda s: invokes(s, STOCK))
            exporter.clear()
            status, _ = await put(port, "/com.example/user-shopping-cart/alice", "com.example/AddToCart",
                                  {"sku": "socks", "quantity": 2},
                                  {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
            assert status == 202
            # the cart asks the stock, the stock answers the cart
            spans = await spans_until(exporter, lambda s: len(invokes(s, CART)) == 2 and invokes(s, STOCK))
        finally:
            await app.stop()
        (ingress,) = named(spans, "PUT /com.example/user-shopping-cart/{id}")
        assert {f"{s.context.trace_id:032x}" for s in spans} == {CLIENT_TRACE}  # the client's trace, joined
        assert parent_of(ingress) == int(CLIENT_SPAN, 16)
        assert ingress.kind == SpanKind.SERVER
        assert ingress.attributes["http.response.status_code"] == 202
        assert ingress.attributes["http.route"] == "/com.example/user-shopping-cart/{id}"
        first, second = sorted(invokes(spans, CART), key=lambda s: s.start_time)
        (stock,) = invokes(spans, STOCK)
        assert parent_of(first) == ingress.context.span_id
        assert parent_of(stock) == first.context.span_id
        assert parent_of(second) == stock.context.span_id
        assert dict(first.attributes) | {"pystatefun.invocation": 0, "pystatefun.partition": 0} == {
            "pystatefun.function.type": CART, "pystatefun.address.id": "alice", "pystatefun.batch.size": 1,
            "pystatefun.outcome": "ok", "pystatefun.invocation": 0, "pystatefun.partition": 0,
        }
        assert stock.attributes["pystatefun.address.id"] == "socks"

    asyncio.run(scenario())


def test_a_checkout_traces_its_egress_record_and_its_reply(tmp_path, ports, tracing, exporter):
    async def scenario() -> None:
        app = Application(load_module(EXAMPLES / "shopping-cart" / "module.yaml"), tmp_path / "data", tracing=tracing)
        await app.start()
        try:
            status, body = await put(ports["INGRESS_PORT"], "/com.example/user-shopping-cart/bob?wait=10",
                                     "com.example/Checkout", {})
            assert status == 200, body
            spans = await spans_until(exporter, lambda s: named(s, "egress io.statefun.playground/egress")
                                      and named(s, "PUT /com.example/user-shopping-cart/{id}"))
        finally:
            await app.stop()
        (ingress,) = named(spans, "PUT /com.example/user-shopping-cart/{id}")
        (cart,) = invokes(spans, CART)
        (egress,) = named(spans, "egress io.statefun.playground/egress")
        assert len({s.context.trace_id for s in spans}) == 1
        assert parent_of(ingress) is None  # no traceparent from the client: the ingress span is the root
        assert ingress.attributes["http.response.status_code"] == 200
        assert parent_of(cart) == ingress.context.span_id
        assert parent_of(egress) == cart.context.span_id
        assert egress.kind == SpanKind.PRODUCER
        assert egress.attributes["pystatefun.egress.topic"] == "receipts"

    asyncio.run(scenario())


def test_the_trace_goes_on_through_a_delayed_message_across_a_restart(tmp_path, ports, tracing, exporter):
    """The delayed message is in the data dir's timers when the runtime stops; the next one fires it
    in the same trace, as the child of the batch that sent it."""
    async def scenario() -> None:
        module = load_module(APPS / "relay.yaml")
        app = Application(module, tmp_path / "data", tracing=tracing)
        await app.start()
        try:
            assert (await put(ports["INGRESS_PORT"], "/test/relay/r", "io.statefun.types/int", 1000))[0] == 202
            await spans_until(exporter, lambda s: invokes(s, "test/relay"))
            app.runtime.commit()
        finally:
            await app.stop()
        assert not invokes(list(exporter.get_finished_spans()), "test/sink")  # it was not due yet
        app = Application(module, tmp_path / "data", tracing=tracing)
        await app.start()
        try:
            spans = await spans_until(exporter, lambda s: invokes(s, "test/sink"))
        finally:
            await app.stop()
        (relay,) = invokes(spans, "test/relay")
        (sink,) = invokes(spans, "test/sink")
        assert sink.context.trace_id == relay.context.trace_id
        assert parent_of(sink) == relay.context.span_id

    asyncio.run(scenario())


def test_a_parked_message_keeps_its_trace_in_the_inbox_across_a_restart(tmp_path, ports, tracing, exporter, monkeypatch, caplog):
    broken = tmp_path / "broken"
    broken.touch()
    monkeypatch.setenv("TRACING_TEST_BROKEN", str(broken))
    caplog.handler.addFilter(TraceIds())

    async def scenario() -> None:
        module = load_module(APPS / "relay.yaml")
        app = Application(module, tmp_path / "data", tracing=tracing)
        await app.start()
        try:
            assert (await put(ports["INGRESS_PORT"], "/test/relay/p", "io.statefun.types/int", 0))[0] == 202
            spans = await spans_until(exporter, lambda s: invokes(s, "test/sink"))
        finally:
            await app.stop()
        (failed,) = invokes(spans, "test/sink")
        assert failed.attributes["pystatefun.outcome"] == "parked"
        assert failed.status.status_code == StatusCode.ERROR and "broken on purpose" in failed.status.description
        (parking,) = [r for r in caplog.records if r.getMessage().startswith("parking test/sink/p")]
        assert parking.trace_id == f"{failed.context.trace_id:032x}"  # the log line carries the trace id
        broken.unlink()
        exporter.clear()
        app = Application(module, tmp_path / "data", tracing=tracing)
        await app.start()
        try:
            assert app.runtime.resume(address("test/sink", "p"))
            (resumed,) = await spans_until(exporter, lambda s: invokes(s, "test/sink"))
        finally:
            await app.stop()
        assert resumed.attributes["pystatefun.outcome"] == "ok"
        assert resumed.context.trace_id == failed.context.trace_id
        assert resumed.parent == failed.parent  # the same message: the child of the relay's batch

    with caplog.at_level(logging.ERROR, logger="pystatefun.runtime"):
        asyncio.run(scenario())


def test_a_remote_function_gets_the_traceparent_of_its_call_and_its_spans_join_the_trace(tmp_path, ports, tracing, exporter):
    """The shopping cart served remotely by our SDK behind an aiohttp server that reads the traceparent
    header as any traced function server would, making its own span in the trace."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    sys_path = str(EXAMPLES / "shopping-cart")
    import sys

    sys.path.insert(0, sys_path)
    try:
        import shopping_cart
    finally:
        sys.path.remove(sys_path)
    handler = RequestReplyHandler(shopping_cart.functions)
    headers: list[str] = []
    function_tracer = tracing.provider.get_tracer("function-server")

    async def serve(request: web.Request) -> web.Response:
        headers.append(request.headers["traceparent"])
        context = TraceContextTextMapPropagator().extract(request.headers)
        with function_tracer.start_as_current_span("function server", context=context, kind=SpanKind.SERVER):
            reply = await handler.handle_async(await request.read())
        return web.Response(body=reply, content_type="application/octet-stream")

    async def scenario() -> None:
        server = web.Application()
        server.router.add_post("/statefun", serve)
        runner = web.AppRunner(server, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", ports["FUNCTIONS_PORT"]).start()
        try:
            app = Application(load_module(EXAMPLES / "shopping-cart" / "module-remote.yaml"), tmp_path / "data",
                              tracing=tracing)
            await app.start()
            try:
                status, _ = await put(ports["INGRESS_PORT"], "/com.example/user-shopping-cart/carol",
                                      "com.example/AddToCart", {"sku": "hat", "quantity": 1})
                assert status == 202
                return await spans_until(exporter, lambda s: len(invokes(s, CART)) == 2 and invokes(s, STOCK)
                                         and len(named(s, "function server")) >= 3)
            finally:
                await app.stop()
        finally:
            await runner.cleanup()

    spans = asyncio.run(scenario())
    assert len({s.context.trace_id for s in spans}) == 1
    calls = {s.context.span_id: s for s in named(spans, "POST")}
    for batch in invokes(spans, CART) + invokes(spans, STOCK):
        # one call per batch, and one more where the function first asks for its state specs
        made = [c for c in calls.values() if parent_of(c) == batch.context.span_id]
        assert made
        for call in made:
            assert call.kind == SpanKind.CLIENT and call.attributes["http.response.status_code"] == 200
            assert call.attributes["url.full"] == f"http://127.0.0.1:{ports['FUNCTIONS_PORT']}/statefun"
    # every request the function server got named one of those calls, and its spans are their children
    assert {int(h.split("-")[2], 16) for h in headers} <= set(calls)
    for served in named(spans, "function server"):
        assert parent_of(served) in calls


def test_an_unsampled_request_makes_no_span_after_its_ingress_and_carries_no_context(tmp_path, ports, exporter):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    from pystatefun.tracing.spans import Tracing

    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def scenario() -> None:
        app = Application(load_module(APPS / "relay.yaml"), tmp_path / "data", tracing=Tracing(provider))
        await app.start()
        try:
            assert (await put(ports["INGRESS_PORT"], "/test/relay/u", "io.statefun.types/int", 60_000))[0] == 202
            while not app.runtime.timers.pending_for("test/relay", "u"):
                await asyncio.sleep(0.01)
            app.runtime.commit()
            assert [t.envelope.trace for t in app.runtime.timers.pending_for("test/relay", "u")] == [None]
        finally:
            await app.stop()

    asyncio.run(scenario())
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_a_batch_of_messages_from_several_traces_is_in_the_first_ones_and_links_the_others(tmp_path, ports, tracing, exporter, monkeypatch):
    """Three requests to one parked address: once resumed, their messages run as one batch."""
    broken = tmp_path / "broken"
    broken.touch()
    monkeypatch.setenv("TRACING_TEST_BROKEN", str(broken))

    async def scenario() -> list[ReadableSpan]:
        app = Application(load_module(APPS / "relay.yaml"), tmp_path / "data", tracing=tracing)
        await app.start()
        try:
            for _ in range(3):
                assert (await put(ports["INGRESS_PORT"], "/test/relay/b", "io.statefun.types/int", 0))[0] == 202
            await spans_until(exporter, lambda s: len(invokes(s, "test/relay")) == 3 and invokes(s, "test/sink"))
            while app.runtime.backlog_of(address("test/sink", "b")) < 3:
                await asyncio.sleep(0.01)
            broken.unlink()
            assert app.runtime.resume(address("test/sink", "b"))
            return await spans_until(exporter, lambda s: [x for x in invokes(s, "test/sink") if x.attributes["pystatefun.outcome"] == "ok"])
        finally:
            await app.stop()

    spans = asyncio.run(scenario())
    relays = sorted(invokes(spans, "test/relay"), key=lambda s: s.start_time)
    assert len({s.context.trace_id for s in relays}) == 3  # one trace per request
    (batch,) = [s for s in invokes(spans, "test/sink") if s.attributes["pystatefun.outcome"] == "ok"]
    assert batch.attributes["pystatefun.batch.size"] == 3
    assert parent_of(batch) == relays[0].context.span_id
    assert [(link.context.trace_id, link.context.span_id) for link in batch.links] == [
        (s.context.trace_id, s.context.span_id) for s in relays[1:]]
