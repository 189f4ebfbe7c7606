"""Serving a StatefulFunctions with aiohttp: a request handler for your own app, or a ready app."""

from __future__ import annotations

import typing

from aiohttp import web

from pystatefun.sdk.functions import StatefulFunctions
from pystatefun.serving import http
from pystatefun.serving.handler import RequestReplyHandler


def aiohttp_handler(
    functions: StatefulFunctions,
) -> typing.Callable[[web.Request], typing.Awaitable[web.Response]]:
    """An aiohttp request handler: ``app.router.add_route("*", "/statefun", aiohttp_handler(functions))``.

    The request size limit is the application's ``client_max_size`` (413 above it).
    """
    handler = RequestReplyHandler(functions)

    async def handle(request: web.Request) -> web.Response:
        reply = http.check_request(request.method, request.headers.get("Content-Type"))
        if reply is None:
            reply = await http.invoke(handler, await request.read())
        return web.Response(
            status=reply.status, body=reply.body, headers={"Content-Type": reply.content_type, **reply.headers}
        )

    return handle


def aiohttp_app(
    functions: StatefulFunctions, *, max_request_bytes: int = http.MAX_REQUEST_BYTES
) -> web.Application:
    """An aiohttp application that serves ``functions`` on every path."""
    app = web.Application(client_max_size=max_request_bytes)
    app.router.add_route("*", "/{path:.*}", aiohttp_handler(functions))
    return app
