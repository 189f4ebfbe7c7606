"""The runtime calling functions served over real HTTP: state negotiation, durable specs, batching of
remote calls, retries, and back-pressure when a remote function is slow.

Each test runs an Application (the same object ``pystatefun run`` runs) over a real module.yaml and a
real SQLite data dir, against an aiohttp server in the same event loop that serves our SDK's
RequestReplyHandler and records every ToFunction request it receives.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from aiohttp import web

from pystatefun import IntType, StatefulFunctions, ValueSpec, message_builder
from pystatefun.app import Application
from pystatefun.config import load_module
from pystatefun.runtime.envelope import Envelope, address
from pystatefun.runtime.invokers import UNREGISTERED_SECONDS
from pystatefun.sdk.messages import to_typed_value
from pystatefun.serving.aiohttp_server import aiohttp_app
from pystatefun.serving.handler import RequestReplyHandler
from pystatefun.wire.request_reply_pb2 import FromFunction, ToFunction

from .conftest import CLIENT_KEY_PASSWORD


class FunctionServer:
    """Our SDK over real HTTP, recording what the runtime sent and what it answered."""

    def __init__(self, functions: StatefulFunctions, *, ssl_context=None, socket_path: Path | None = None):
        self.handler = RequestReplyHandler(functions)
        self.port = 0  # known once started
        self.ssl_context = ssl_context
        self.socket_path = socket_path
        self.batches: list[tuple[str, int]] = []  # (address id, invocations) of every answered batch
        self.negotiations = 0  # IncompleteInvocationContext replies
        self.fail_next = 0  # answer this many requests with 503 first
        self.gate: asyncio.Event | None = None  # when set, requests wait for it
        self.answer: bytes | None = None  # when set, the reply to every request instead of the SDK's
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503, text="overloaded, try again")
        if self.gate is not None:
            await self.gate.wait()
        if self.answer is not None:
            return web.Response(body=self.answer, content_type="application/octet-stream")
        reply = await self.handler.handle_async(body)
        batch = ToFunction.FromString(body).invocation
        if FromFunction.FromString(reply).HasField("incomplete_invocation_context"):
            self.negotiations += 1
        else:
            self.batches.append((batch.target.id, len(batch.invocations)))
        return web.Response(body=reply, content_type="application/octet-stream")

    async def __aenter__(self) -> "FunctionServer":
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        if self.socket_path is not None:
            await web.UnixSite(self._runner, str(self.socket_path), ssl_context=self.ssl_context).start()
        else:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))  # the port is ours from here: no window for another process to take it
            self.port = sock.getsockname()[1]
            await web.SockSite(self._runner, sock, ssl_context=self.ssl_context).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()


def module(folder: Path, port: int, extra: str = "", url: str | None = None, text: str | None = None) -> Path:
    path = folder / "module.yaml"
    url = url or f"http://127.0.0.1:{port}/{{function.name}}"
    path.write_text(text or f"kind: io.statefun.endpoints.v2/http\nspec:\n  functions: t/*\n  urlPathTemplate: {url}\n{extra}")
    return path


async def settle(app: Application, timeout: float = 10.0) -> None:
    """Waits until nothing is queued or in flight, then commits."""
    runtime = app.runtime
    deadline = asyncio.get_running_loop().time() + timeout
    while runtime._ready or runtime._invocations or any(
        m.backlog or m.in_flight for p in runtime.processors.values() for m in p.mailboxes.values() if not m.parked
    ):
        assert asyncio.get_running_loop().time() < deadline, "the runtime did not settle"
        await asyncio.sleep(0.01)
    runtime.commit()


def send(app: Application, id: str, value: int) -> None:
    app.runtime.route(Envelope(address("t/counter", id), None, to_typed_value(IntType, value)))


def count(app: Application, id: str) -> int | None:
    stored = app.store.load_state("t/counter", id).get("count")
    return None if stored is None else IntType.serializer().deserialize(stored.value.value)


def counter_functions(order: list | None = None) -> StatefulFunctions:
    functions = StatefulFunctions()

    @functions.bind("t/counter", specs=[ValueSpec("count", IntType), ValueSpec("seen", IntType)])
    def counter(context, message):
        if order is not None:
            order.append((context.address.id, message.as_int()))
        context.storage.count = (context.storage.count or 0) + message.as_int()
        context.storage.seen = (context.storage.seen or 0) + 1

    return functions


def test_many_addresses_negotiating_state_at_once_all_run(tmp_path):
    """Regression: addresses whose first calls crossed a concurrent negotiation were parked."""

    async def scenario():
        async with FunctionServer(counter_functions()) as server:
            app = Application(load_module(module(tmp_path, server.port)), tmp_path / "data")
            await app.start()
            for i in range(200):
                send(app, str(i), 1)
            await settle(app)
            assert [count(app, str(i)) for i in range(200)] == [1] * 200
            assert not app.store.parked()
            await app.stop()

    asyncio.run(scenario())


def test_registered_specs_survive_a_restart_without_renegotiating(tmp_path):
    async def scenario():
        async with FunctionServer(counter_functions()) as server:
            path = module(tmp_path, server.port)
            app = Application(load_module(path), tmp_path / "data")
            await app.start()
            send(app, "a", 1)
            await settle(app)
            await app.stop()
            assert server.negotiations == 1

            app = Application(load_module(path), tmp_path / "data")
            await app.start()
            send(app, "b", 5)
            await settle(app)
            assert (count(app, "a"), count(app, "b")) == (1, 5)
            assert server.negotiations == 1  # the specs came from the data dir
            await app.stop()

    asyncio.run(scenario())


def test_messages_arriving_during_a_call_form_the_next_batch_in_order(tmp_path):
    async def scenario():
        order = []
        async with FunctionServer(counter_functions(order)) as server:
            app = Application(load_module(module(tmp_path, server.port, "  maxNumBatchRequests: 3\n")), tmp_path / "data")
            await app.start()
            send(app, "a", 1)
            await settle(app)  # negotiated and ran alone
            server.gate = asyncio.Event()
            send(app, "a", 2)
            await asyncio.sleep(0.1)  # in flight, held by the gate
            for value in (3, 4, 5, 6, 7):
                send(app, "a", value)
            server.gate.set()
            await settle(app)
            await app.stop()
        assert [v for _, v in order] == [1, 2, 3, 4, 5, 6, 7]
        # one call each: [1], [2], then the five that waited, in batches of at most maxNumBatchRequests
        assert server.batches == [("a", 1), ("a", 1), ("a", 3), ("a", 2)]
        app = Application(load_module(module(tmp_path, server.port)), tmp_path / "data")
        assert count(app, "a") == 28  # the net of every batch's mutations, none lost between batches
        app.store.close()

    asyncio.run(scenario())


def test_a_failing_endpoint_is_retried_and_the_message_applied_once(tmp_path):
    async def scenario():
        async with FunctionServer(counter_functions()) as server:
            extra = "  transport:\n    call: 10s\n"
            app = Application(load_module(module(tmp_path, server.port, extra)), tmp_path / "data")
            await app.start()
            send(app, "a", 1)
            await settle(app)
            server.fail_next = 3  # three 503s, then the real answer
            send(app, "a", 10)
            await settle(app)
            assert count(app, "a") == 11
            assert server.fail_next == 0 and not app.store.parked()
            await app.stop()

    asyncio.run(scenario())


def test_a_slow_function_back_pressures_the_ingress_with_bounded_memory(tmp_path):
    """A producer that pushes as fast as the ingress admits cannot grow the address's backlog past the
    batch cap while the function is stuck; once it answers, everything accepted is applied once."""

    async def scenario():
        async with FunctionServer(counter_functions()) as server:
            app = Application(load_module(module(tmp_path, server.port, "  maxNumBatchRequests: 10\n")), tmp_path / "data")
            await app.start()
            send(app, "a", 0)
            await settle(app)
            server.gate = asyncio.Event()  # the function stops answering
            target = address("t/counter", "a")
            accepted = 0

            async def producer():
                nonlocal accepted
                for _ in range(1000):
                    assert await app.runtime.admit(target)
                    send(app, "a", 1)
                    accepted += 1

            task = asyncio.ensure_future(producer())
            try:
                await asyncio.sleep(0.3)
                # one batch in flight, a full backlog behind it, the producer blocked: nothing more in memory
                mailbox = app.runtime.processors[app.runtime.partition_of("a")].mailboxes["t/counter", "a"]
                assert len(mailbox.in_flight) == 10 and len(mailbox.backlog) == 10
                assert accepted == 20 and not task.done()
                # another address is not held up
                assert await asyncio.wait_for(app.runtime.admit(address("t/counter", "b")), 1)
            finally:
                server.gate.set()
            await asyncio.wait_for(task, 30)
            await settle(app)
            assert count(app, "a") == 1000
            await app.stop()

    asyncio.run(scenario())


def test_a_reply_the_runtime_cannot_apply_parks_the_address_with_the_reason(tmp_path):
    """A function (of any SDK) that answers with a message to an empty id, or a state it never
    declared: nothing of the batch is applied, the address is parked with the reason, others go on."""
    bad = FromFunction()
    bad.invocation_result.outgoing_messages.add().target.namespace = "t"  # no type, no id
    undeclared = FromFunction()
    undeclared.invocation_result.state_mutations.add(state_name="nope", mutation_type=FromFunction.PersistedValueMutation.DELETE)

    async def scenario():
        async with FunctionServer(counter_functions()) as server:
            app = Application(load_module(module(tmp_path, server.port)), tmp_path / "data")
            await app.start()
            send(app, "a", 1)
            await settle(app)
            server.answer = bad.SerializeToString()
            send(app, "a", 2)
            await settle(app)
            server.answer = undeclared.SerializeToString()
            send(app, "b", 3)
            await settle(app)
            server.answer = None
            send(app, "c", 4)
            await settle(app)
            parked = app.store.parked()
            assert "cannot deliver" in parked["t/counter", "a"] and "target_id" in parked["t/counter", "a"]
            assert "never declared" in parked["t/counter", "b"]
            assert (count(app, "a"), count(app, "b"), count(app, "c")) == (1, None, 4)
            await app.stop()

    asyncio.run(scenario())


def test_a_type_the_endpoint_has_not_registered_is_refused_for_a_while(tmp_path):
    """A namespace binding (t/*) takes any type name; the endpoint's 404 for one makes its message a dead
    letter (no address is parked, so made-up names cannot fill /parked), and new messages to that type are
    refused for UNREGISTERED_SECONDS, then tried again."""
    async def scenario():
        runner = web.AppRunner(aiohttp_app(counter_functions()), access_log=None)  # 404 for unknown types
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        app = Application(load_module(module(tmp_path, sock.getsockname()[1])), tmp_path / "data")
        try:
            await app.start()
            app.runtime.route(Envelope(address("t/nobody", "x"), None, to_typed_value(IntType, 1)))
            await settle(app)
            assert not app.store.parked()
            [letter] = app.store.dead_letters()
            assert letter["target"] == "t/nobody/x"
            assert "answered 404" in letter["reason"] and "deploy it" in letter["reason"]
            invoker = app.resolve("t/nobody")
            refusal = invoker.refusal("t/nobody")
            assert "'t/nobody' is not registered at its endpoint" in refusal and " s more" in refusal
            assert "t/nobody" not in invoker.registered  # nothing kept for a type that does not exist
            assert invoker.refusal("t/counter") is None
            now = invoker.clock()
            invoker.clock = lambda: now + UNREGISTERED_SECONDS + 1
            assert invoker.refusal("t/nobody") is None and invoker.unregistered_types() == {}
        finally:
            await app.stop()
            await runner.cleanup()

    asyncio.run(scenario())


async def round_trip(app: Application) -> None:
    await app.start()
    send(app, "a", 5)
    send(app, "a", 6)
    await settle(app)
    assert count(app, "a") == 11 and not app.store.parked()
    await app.stop()


def test_mtls_endpoint_with_an_encrypted_client_key(tmp_path, certs):
    password = tmp_path / "key-password"
    password.write_text(CLIENT_KEY_PASSWORD + "\n")
    transport = (
        f"  transport:\n    trust_cacerts: {certs.ca}\n    client_cert: {certs.client_cert}\n"
        f"    client_key: {certs.client_key}\n    client_key_password: {password}\n"
    )

    async def scenario():
        context = certs.server_context(require_client_cert=True)
        async with FunctionServer(counter_functions(), ssl_context=context) as server:
            url = f"https://localhost:{server.port}/{{function.name}}"
            await round_trip(Application(load_module(module(tmp_path, server.port, transport, url)), tmp_path / "data"))
            assert server.batches

    asyncio.run(scenario())


def test_http_over_a_unix_socket(tmp_path):
    async def scenario():
        socket_path = tmp_path / "functions.sock"
        async with FunctionServer(counter_functions(), socket_path=socket_path) as server:
            url = f"http+unix://{socket_path}/statefun/{{function.name}}"
            await round_trip(Application(load_module(module(tmp_path, 0, url=url)), tmp_path / "data"))
            assert server.batches

    asyncio.run(scenario())


def test_a_v1_endpoint_and_the_legacy_module_format(tmp_path):
    async def scenario():
        async with FunctionServer(counter_functions()) as server:
            v1 = (
                "kind: io.statefun.endpoints.v1/http\nspec:\n  functions: t/counter\n"
                f"  urlPathTemplate: http://127.0.0.1:{server.port}/{{function.name}}\n"
                "  maxNumBatchRequests: 10\n  timeouts:\n    call: 30s\n    read: 2s\n"
            )
            await round_trip(Application(load_module(module(tmp_path, 0, text=v1)), tmp_path / "v1"))
            legacy = (
                'version: "3.0"\nmodule:\n  meta:\n    type: remote\n  spec:\n    endpoints:\n'
                "      - endpoint:\n          meta:\n            kind: http\n          spec:\n"
                "            functions: t/*\n"
                f"            urlPathTemplate: http://127.0.0.1:{server.port}/statefun\n"
            )
            await round_trip(Application(load_module(module(tmp_path, 0, text=legacy)), tmp_path / "legacy"))
            assert len(server.batches) >= 2

    asyncio.run(scenario())
