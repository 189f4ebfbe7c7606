"""A remote function that fails shows it at once: a WARNING when its endpoint starts failing and when it
recovers, the endpoint's health in /functions and /health, a metric; a function that raises parks its
address after retry.function_error_max_attempts (3) attempts answered 500, or is retried for the call
budget as in StateFun when that is null."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import generate_latest

from pystatefun import IntType, StatefulFunctions, ValueSpec
from pystatefun.app import Application
from pystatefun.config import load_module

from .harness import until
from .test_remote import FunctionServer, count, module, send, settle


class CountingServer(FunctionServer):
    """Counts the requests it receives, the failed ones included."""

    requests = 0

    async def _handle(self, request):
        self.requests += 1
        return await super()._handle(request)


def raising_functions(fixed: list[bool]) -> StatefulFunctions:
    functions = StatefulFunctions()

    @functions.bind("t/counter", specs=[ValueSpec("count", IntType)])
    def counter(context, message):
        if not fixed:
            raise KeyError("missing_key")
        context.storage.count = (context.storage.count or 0) + message.as_int()

    return functions


def metric(app: Application, name: str) -> str:
    return next(line for line in generate_latest(app.metrics.registry).decode().splitlines() if line.startswith(name))


def test_a_function_that_raises_parks_after_three_attempts_and_the_endpoint_shows_failing(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="pystatefun.runtime")

    async def scenario():
        fixed: list[bool] = []
        async with CountingServer(raising_functions(fixed)) as server:
            # the call budget is StateFun's two minutes: by default, parking does not wait for it
            app = Application(load_module(module(tmp_path, server.port)), tmp_path / "data")
            await app.start()
            url = f"http://127.0.0.1:{server.port}/{{function.name}}"
            send(app, "a", 1)
            await until(lambda: app.runtime.parked(), "the address parks")
            negotiation = 1  # the first request learns the state specs
            assert server.requests == negotiation + 3

            (mailbox,) = app.runtime.parked()
            assert "failed after 3 attempts, each answered HTTP 500: the function raised" in mailbox.parked
            assert "function_error_max_attempts" in mailbox.parked
            assert "its traceback is in the function server's log" in mailbox.parked

            (binding,) = app.describe_functions()
            health = binding["health"]
            assert health["status"] == "failing" and "HTTP 500" in health["last_error"]
            assert health["failing_since"] <= health["last_call_at"]
            assert app.health_status()["failing_endpoints"][url]["status"] == "failing"
            assert metric(app, "pystatefun_endpoint_failing{") == f'pystatefun_endpoint_failing{{endpoint="{url}"}} 1.0'
            assert metric(app, "pystatefun_endpoint_failed_attempts_total{").endswith(" 3.0")
            warnings = [r.getMessage() for r in caplog.records if "is failing" in r.getMessage()]
            assert len(warnings) == 1  # once when it starts failing, not once per attempt
            assert url.replace("{function.name}", "counter") in warnings[0] and "HTTP 500" in warnings[0]
            assert "retried with backoff for at most the call budget of 120 s" in warnings[0]
            assert "or 3 attempts while the function raises" in warnings[0]

            fixed.append(True)  # the fix is deployed
            assert app.runtime.resume(mailbox.address)
            await settle(app)
            assert count(app, "a") == 1
            assert app.describe_functions()[0]["health"]["status"] == "ok"
            assert "failing_endpoints" not in app.health_status()
            assert metric(app, "pystatefun_endpoint_failing{").endswith(" 0.0")
            assert any("recovered" in r.getMessage() for r in caplog.records)
            await app.stop()

    asyncio.run(scenario())


def test_an_endpoint_that_is_unavailable_shows_failing_while_the_call_is_still_retried(tmp_path):
    async def scenario():
        async with FunctionServer(raising_functions([True])) as server:
            app = Application(load_module(module(tmp_path, server.port)), tmp_path / "data")
            await app.start()
            server.fail_next = 10_000  # 503s: retried for the whole call budget
            send(app, "a", 5)
            await until(lambda: app.describe_functions()[0]["health"]["status"] == "failing", "failing shows")
            assert not app.runtime.parked()  # still retried: 503 is not the function raising
            assert "HTTP 503" in app.describe_functions()[0]["health"]["last_error"]
            server.fail_next = 0
            await settle(app)
            assert count(app, "a") == 5 and not app.runtime.parked()
            assert app.describe_functions()[0]["health"]["status"] == "ok"
            await app.stop()

    asyncio.run(scenario())


def test_a_request_that_waits_in_vain_on_a_failing_endpoint_is_told_so(tmp_path):
    async def scenario():
        async with FunctionServer(raising_functions([True])) as server:
            url = f"http://127.0.0.1:{server.port}/{{function.name}}"
            text = (f"kind: io.statefun.endpoints.v2/http\nspec:\n  functions: t/*\n  urlPathTemplate: {url}\n---\n"
                    "kind: io.statefun.playground.v1/ingress\nspec:\n  port: 0\n")
            app = Application(load_module(module(tmp_path, server.port, text=text)), tmp_path / "data")
            await app.start()
            server.fail_next = 10_000  # 503s: retried for the whole call budget
            answer = await app.ingress.send("t/counter", "w", "application/vnd.io.statefun.types/int",
                                            IntType.serializer().serialize(1), "1", None)
            assert answer.status == 504
            body = answer.body.decode()
            assert "no reply within 1 s; the message was accepted and is processed exactly once" in body
            assert f"Its function t/counter may be why: its endpoint {url} has been failing for " in body
            assert "HTTP 503" in body and "its calls are retried" in body
            server.fail_next = 0
            await settle(app)
            assert count(app, "w") == 1  # retried until the endpoint answered
            await app.stop()

    asyncio.run(scenario())


def test_with_no_limit_a_raising_function_is_retried_like_any_failure_as_in_statefun(tmp_path):
    """function_error_max_attempts: null (for a gateway that answers 500 for its own transient failures):
    a 500 is retried until the call budget, and a function that recovers meanwhile is applied once,
    without an operator."""
    async def scenario():
        fixed: list[bool] = []
        async with CountingServer(raising_functions(fixed)) as server:
            extra = "  retry:\n    function_error_max_attempts: null\n    max_backoff: 10ms\n"
            app = Application(load_module(module(tmp_path, server.port, extra)), tmp_path / "data")
            await app.start()
            send(app, "a", 4)
            await until(lambda: server.requests > 1 + 10, "ten attempts and more")
            assert not app.runtime.parked()
            fixed.append(True)
            await settle(app)
            assert count(app, "a") == 4 and not app.runtime.parked()
            await app.stop()

    asyncio.run(scenario())


def test_function_error_max_attempts_gives_a_raising_function_more_attempts(tmp_path):
    async def scenario():
        async with CountingServer(raising_functions([])) as server:
            extra = "  retry:\n    function_error_max_attempts: 5\n    max_backoff: 10ms\n"
            app = Application(load_module(module(tmp_path, server.port, extra)), tmp_path / "data")
            await app.start()
            send(app, "a", 1)
            await until(lambda: app.runtime.parked(), "the address parks")
            assert server.requests == 1 + 5  # the negotiation, then five attempts
            await app.stop()

    asyncio.run(scenario())


def test_only_the_attempts_answered_500_count_towards_the_limit(tmp_path):
    """A call that first meets a function server being restarted (503s here; refused connections and
    timeouts alike) is not cut short by them: it parks at its third 500, not at its third attempt."""
    async def scenario():
        fixed = [True]
        async with CountingServer(raising_functions(fixed)) as server:
            app = Application(load_module(module(tmp_path, server.port, "  retry:\n    max_backoff: 10ms\n")),
                              tmp_path / "data")
            await app.start()
            send(app, "a", 1)  # learns the state specs
            await settle(app)
            fixed.clear()  # a bad version of the function is deployed, and its server is restarting
            server.fail_next, server.requests = 5, 0
            send(app, "a", 1)
            await until(lambda: app.runtime.parked(), "the address parks")
            (mailbox,) = app.runtime.parked()
            assert "failed after 8 attempts, 3 answered HTTP 500: the function raised" in mailbox.parked
            assert server.requests == 5 + 3
            await app.stop()

    asyncio.run(scenario())
