"""Where the serving path runs a function: synchronous ones in the serving thread pool (with the caller's
context variables), async ones on the event loop; RequestReplyHandler.handle_async alone keeps the
official SDK's behaviour of running both on the loop."""

import asyncio
import contextvars
import threading

from pystatefun import IntType, StatefulFunctions
from pystatefun.serving import RequestReplyHandler, http
from pystatefun.wire.request_reply_pb2 import FromFunction

from support.protocol import request, typed

tenant = contextvars.ContextVar("tenant", default="unset")
seen: dict[str, tuple[str, str]] = {}

functions = StatefulFunctions()


@functions.bind("test/sync")
def sync_function(context, message):
    seen["sync"] = (threading.current_thread().name, tenant.get())


@functions.bind("test/async")
async def async_function(context, message):
    seen["async"] = (threading.current_thread().name, tenant.get())


def invoke_both(call) -> None:
    async def scenario() -> None:
        tenant.set("acme")  # what a framework's middleware might set for the request
        for typename in ("test/sync", "test/async"):
            await call(request(typename, "1", [typed(IntType, 1)]))

    seen.clear()
    asyncio.run(scenario())


def test_the_serving_path_runs_sync_functions_in_its_thread_pool_and_async_ones_on_the_loop() -> None:
    handler = RequestReplyHandler(functions)

    async def call(body: bytes) -> None:
        reply = await http.invoke(handler, body)
        assert reply.status == 200, reply.body
        FromFunction.FromString(reply.body)

    invoke_both(call)
    thread, value = seen["sync"]
    assert thread.startswith("pystatefun-function") and value == "acme"
    assert seen["async"] == (threading.main_thread().name, "acme")


def test_handle_async_alone_runs_sync_functions_on_the_loop_as_the_official_sdk_does() -> None:
    invoke_both(RequestReplyHandler(functions).handle_async)
    assert seen == {"sync": (threading.main_thread().name, "acme"), "async": (threading.main_thread().name, "acme")}
