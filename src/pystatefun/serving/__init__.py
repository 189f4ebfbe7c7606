"""Serving functions over HTTP with the StateFun request-reply protocol."""

from pystatefun.serving.handler import RequestReplyHandler

__all__ = ["RequestReplyHandler"]
