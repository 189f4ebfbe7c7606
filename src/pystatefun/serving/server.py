"""The server of ``pystatefun serve``: a StatefulFunctions as a remote function endpoint on pystatefun's
own HTTP/1.1 server (io/http_server.py), the one the runtime's ingress uses.

A function endpoint is called once per message batch, so its server's cost per request is paid on every
remote invocation; on the same machine as the runtime it also takes CPU from it. In the keyed-counter
benchmark uvicorn with the ASGI app used about 42% of a core at 2,000 requests/s. The ASGI app
(serving/asgi.py) and the aiohttp handler stay for serving functions from an application of your own.
"""

from __future__ import annotations

import typing

from pystatefun.event_loop import stop_signal
from pystatefun.io.http_server import Handler, HttpServer, Request, Response
from pystatefun.sdk.functions import StatefulFunctions
from pystatefun.serving import http
from pystatefun.serving.handler import RequestReplyHandler


def endpoint(functions: StatefulFunctions) -> Handler:
    """The HTTP handler of a function endpoint serving ``functions`` on every path. A synchronous function
    kept on the loop is answered at once (no coroutine, no task: io/http_server.py); anything else is
    awaited in a task of the server's."""
    handler = RequestReplyHandler(functions)

    def handle(request: Request) -> Response | typing.Awaitable[Response]:
        reply = http.check_request(request.method, request.headers.get("Content-Type"))
        if reply is None:
            reply = http.invoke_now(handler, request.body)
            if not isinstance(reply, http.HttpReply):
                return _response_of(reply)
        return Response(reply.status, reply.body, {"Content-Type": reply.content_type, **reply.headers})

    return handle


async def _response_of(reply: typing.Awaitable[http.HttpReply]) -> Response:
    done = await reply
    return Response(done.status, done.body, {"Content-Type": done.content_type, **done.headers})


async def serve_until_signalled(
    functions: StatefulFunctions, host: str, port: int, *, max_request_bytes: int = http.MAX_REQUEST_BYTES
) -> None:
    """Serves ``functions`` on ``host:port`` until SIGINT or SIGTERM; requests in progress then finish.

    An invocation whose caller has gone away is cancelled: the runtime retries a batch it did not get an
    answer for, so finishing it would only take time from the calls still waited for."""
    server = HttpServer(endpoint(functions), max_request_bytes, cancel_on_disconnect=True, name="function endpoint")
    await server.start(host, port)
    stop = stop_signal()
    try:
        await stop.wait()
    finally:
        await server.close()
