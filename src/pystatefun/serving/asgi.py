"""An ASGI application serving a StatefulFunctions (run it with uvicorn, hypercorn, ...)."""

from __future__ import annotations

import typing

from pystatefun.sdk.functions import StatefulFunctions
from pystatefun.serving import http
from pystatefun.serving.handler import RequestReplyHandler

Scope = typing.MutableMapping[str, typing.Any]
Receive = typing.Callable[[], typing.Awaitable[typing.MutableMapping[str, typing.Any]]]
Send = typing.Callable[[typing.MutableMapping[str, typing.Any]], typing.Awaitable[None]]


class AsgiApp:
    """Serves every path: the target function is named in the request body, not in the URL.

    ``app = AsgiApp(functions)`` then ``uvicorn module:app``.
    """

    def __init__(self, functions: StatefulFunctions, *, max_request_bytes: int = http.MAX_REQUEST_BYTES):
        self.handler = RequestReplyHandler(functions)
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"pystatefun serves HTTP only, not {scope['type']!r}")
        content_type = None
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                content_type = value.decode("latin-1")
        reply = http.check_request(scope["method"], content_type)
        if reply is None:
            body = await _read_body(receive, self.max_request_bytes)
            reply = http.too_large(self.max_request_bytes) if body is None else await http.invoke(self.handler, body)
        headers = [(b"content-type", reply.content_type.encode()), (b"content-length", str(len(reply.body)).encode())]
        headers.extend((k.lower().encode(), v.encode()) for k, v in reply.headers.items())
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None when it is larger than ``limit``."""
    chunks = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return b""
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not event.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
