"""Serving functions over HTTP with the StateFun request-reply protocol.

``AsgiApp`` for any ASGI server, ``aiohttp_handler`` / ``aiohttp_app`` for aiohttp (imported on first
use, so ``import pystatefun`` does not load aiohttp).
"""

from __future__ import annotations

import typing

from pystatefun.serving.asgi import AsgiApp
from pystatefun.serving.handler import RequestReplyHandler

__all__ = ["AsgiApp", "RequestReplyHandler", "aiohttp_app", "aiohttp_handler"]


def __getattr__(name: str) -> typing.Any:
    if name in ("aiohttp_app", "aiohttp_handler"):
        from pystatefun.serving import aiohttp_server

        return getattr(aiohttp_server, name)
    raise AttributeError(f"module 'pystatefun.serving' has no attribute {name!r}")
