"""The HTTP rules of a remote function endpoint, shared by the ASGI app and the aiohttp handler.

POST only; the body is a ``ToFunction`` (``application/octet-stream`` or no content type); the reply is
a ``FromFunction`` with ``application/octet-stream``. Errors answer with a plain-text reason: 400 for a
body that is not a StateFun request, 404 for a function type nobody registered, 405/415/413 for the
wrong method, content type or size, and 500 naming only the exception's type when the function raises:
its message can hold anything (a connection string, a customer's data), so the message and the traceback
go to this server's log, never to whoever sent the request.

Synchronous functions run on the event loop until they show themselves slow there, then in a thread
pool shared by every app of the process (serving/threads.py), so that one slow function does not hold
every other request; async functions run on the loop.
"""

from __future__ import annotations

import logging
import typing
from dataclasses import dataclass, field

from pystatefun.sdk.errors import MalformedRequestError, UnknownFunctionError
from pystatefun.serving import threads
from pystatefun.serving.handler import RequestReplyHandler

log = logging.getLogger("pystatefun.serving")

CONTENT_TYPE = "application/octet-stream"
MAX_REQUEST_BYTES = 32 * 1024 * 1024  # the StateFun transports' default payload_max_bytes


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, reason: str, **headers: str) -> HttpReply:
    return HttpReply(status, reason.encode("utf-8"), headers=headers)


def check_request(method: str, content_type: str | None) -> HttpReply | None:
    """The error reply for a request line and headers a function endpoint refuses, else None."""
    if method != "POST":
        return _error(405, f"{method} is not supported: StateFun functions are invoked with POST\n", Allow="POST")
    if content_type:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != CONTENT_TYPE:
            return _error(415, f"unsupported Content-Type {content_type!r}: send {CONTENT_TYPE}\n")
    return None


def too_large(limit: int) -> HttpReply:
    return _error(413, f"the request body is larger than {limit} bytes\n")


async def invoke(handler: RequestReplyHandler, body: bytes) -> HttpReply:
    """Runs the request and turns the outcome into the HTTP reply."""
    reply = invoke_now(handler, body)
    return reply if isinstance(reply, HttpReply) else await reply


def invoke_now(handler: RequestReplyHandler, body: bytes) -> HttpReply | typing.Awaitable[HttpReply]:
    """``invoke`` without a coroutine when the request can be answered right here (a synchronous function
    on the loop: RequestReplyHandler.handle_now); else an awaitable of the reply, to await in a task."""
    if not body:
        return _error(400, "empty request body: expected a StateFun ToFunction message\n")
    try:
        reply = handler.handle_now(body, sync_runner=threads.PROCESS_RUNNER)
    except Exception as e:
        return _failed(e)
    if isinstance(reply, bytes):
        return HttpReply(200, reply, CONTENT_TYPE)
    return _awaited(reply)


async def _awaited(reply: typing.Awaitable[bytes]) -> HttpReply:
    try:
        return HttpReply(200, await reply, CONTENT_TYPE)
    except Exception as e:
        return _failed(e)


def _failed(e: Exception) -> HttpReply:
    """The reply to a request that raised ``e``."""
    if isinstance(e, MalformedRequestError):
        return _error(400, f"{e}\n")
    if isinstance(e, UnknownFunctionError):
        return _error(404, f"{e}\n")
    log.exception("the function raised %s; answered 500 with the exception type only", type(e).__name__,
                  exc_info=e)
    return _error(500, f"the function raised {type(e).__name__}; its message and traceback are in the function server's log\n")
