"""The kinds that bind functions: HTTP endpoints (v1 and v2, with their transports) and embedded modules."""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from datetime import timedelta
from pathlib import PurePosixPath

from pystatefun.config.durations import format_duration
from pystatefun.config.model import (
    FUNCTION_NAME_PLACEHOLDER,
    KIND_EMBEDDED,
    KIND_HTTP_V1,
    MAX_BATCH_REQUESTS,
    MAX_PAYLOAD_BYTES,
    MAX_POOL_SIZE,
    MAX_RETRY_ATTEMPTS,
    MAX_TIMEOUT,
    MIN_BATCH_REQUESTS,
    TRANSPORT_ASYNC,
    TRANSPORT_OKHTTP,
    EmbeddedFunctions,
    FunctionSelector,
    HttpEndpoint,
    RetryPolicy,
    TransportSpec,
)
from pystatefun.config.reader import (
    Context,
    Fields,
    Invalid,
    Node,
    Reported,
    choice,
    duration,
    file_path,
    integer,
    sequence,
    string,
)

_SCHEMES = ("http", "https", "http+unix", "https+unix")
# what RFC 3986 allows in a URI: unreserved characters, delimiters, and '%' starting a percent-encoding.
# Anything else (a space, CR/LF, a control character, '"', '<', '\\', non-ASCII) would reach the request
# line as it is: an invalid request at best, a second request smuggled into it at worst.
_URI_CHARACTER = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]")
_PERCENT_ENCODING = re.compile(r"%[0-9A-Fa-f]{2}")
_NAMED = {" ": "a space", "\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\t": "a tab"}
_IDENTIFIER_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def selector(node: Node) -> FunctionSelector:
    """``functions``: ``ns/name`` or ``ns/*``."""
    try:
        return FunctionSelector.parse(string(node))
    except ValueError as e:
        raise Invalid(str(e)) from None


def url_path_template(node: Node) -> str:
    """An http(s) URL, or an http(s)+unix URL whose path names a ``.sock`` file; ``{function.name}`` is
    the only placeholder (StateFun replaces nothing else and then fails on the braces)."""
    template = string(node).strip()
    url = template.replace(FUNCTION_NAME_PLACEHOLDER, "name")
    if "{" in url or "}" in url:
        raise Invalid(f"{template!r}: the only placeholder is {FUNCTION_NAME_PLACEHOLDER}, e.g. 'http://functions:8000/{{function.name}}'")
    _check_uri_characters(template)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme.lower() not in _SCHEMES:
        got = f"the scheme '{parsed.scheme}'" if parsed.scheme else "no scheme"
        raise Invalid(f"{template!r} has {got}: use an http, https, http+unix or https+unix URL, e.g. 'http://functions:8000/statefun'")
    if parsed.scheme.lower().endswith("+unix"):
        if parsed.netloc:
            raise Invalid(f"{template!r}: a {parsed.scheme} URL has no host; write the socket file as the path, "
                          f"e.g. '{parsed.scheme}:///run/functions.sock/statefun'")
        unix_socket_target(url)  # raises Invalid when no segment names the socket file
    else:
        if not parsed.hostname:
            raise Invalid(f"{template!r} has no host: write e.g. 'http://functions:8000/statefun'")
        try:
            _ = parsed.port
        except ValueError:
            raise Invalid(f"{template!r} has an invalid port") from None
    return template


def _check_uri_characters(template: str) -> None:
    """Refuses a character RFC 3986 does not allow in a URI, naming it and where it is (1-based)."""
    # the placeholder is the one use of braces: check the rest, at the same positions
    text = template.replace(FUNCTION_NAME_PLACEHOLDER, "x" * len(FUNCTION_NAME_PLACEHOLDER))
    for position, character in enumerate(text):
        if character == "%" and not _PERCENT_ENCODING.match(text, position):
            raise Invalid(f"{template!r}: '%' at position {position + 1} does not start a percent-encoding like %20: "
                          f"write a literal '%' as %25")
        if not _URI_CHARACTER.fullmatch(character):
            what = _NAMED.get(character) or (
                f"the control character U+{ord(character):04X}" if not character.isprintable()
                else f"the character {character!r}")
            raise Invalid(f"{template!r} is not a valid URL: {what} at position {position + 1} is not allowed in a URL; "
                          f"percent-encode it (e.g. %20 for a space) or remove it")


def unix_socket_target(url: str) -> tuple[str, str]:
    """Splits an ``http+unix`` URL into the socket file and the HTTP path, as StateFun does:
    ``http+unix:///run/fn.sock/statefun`` -> ``("/run/fn.sock", "/statefun")``."""
    parts = PurePosixPath(urllib.parse.urlsplit(url).path).parts[1:]
    for index, part in enumerate(parts):
        if part.endswith(".sock"):
            return "/" + "/".join(parts[: index + 1]), "/" + "/".join(parts[index + 1 :])
    raise Invalid(f"{url!r}: a +unix URL names the socket file in its path, e.g. 'http+unix:///run/functions.sock/statefun', and no path segment here ends in '.sock'")


def parse_http_endpoint(fields: Fields, ctx: Context) -> HttpEndpoint:
    """``io.statefun.endpoints.v2/http`` and ``io.statefun.endpoints.v1/http`` (which has ``timeouts``
    instead of ``transport`` and always uses OkHttp)."""
    kind = ctx.kind or ""
    functions = fields.required("functions", selector, example="com.example/*")
    template = fields.required("urlPathTemplate", url_path_template, example="http://functions:8000/statefun")
    max_batch = fields.optional("maxNumBatchRequests", integer(MIN_BATCH_REQUESTS, MAX_BATCH_REQUESTS), 1000)
    if kind == KIND_HTTP_V1:
        transport = _okhttp_transport(fields)
    else:
        node = fields.get("transport")
        transport = _transport(Fields(node)) if node is not None else TransportSpec.async_defaults()
    retry_node = fields.get("retry")
    retry = _retry(Fields(retry_node)) if retry_node is not None else None
    fields.finish(hints=_V1_HINTS if kind == KIND_HTTP_V1 else _V2_HINTS)
    if functions is None or template is None:
        raise Reported
    return HttpEndpoint(
        kind=kind,
        functions=functions,
        url_path_template=template,
        max_num_batch_requests=max_batch,
        transport=transport,
        retry=retry,
        origin=ctx.origin,
    )


_V1_HINTS = {"transport": "io.statefun.endpoints.v1/http always uses OkHttp; set its timeouts in 'timeouts', or use io.statefun.endpoints.v2/http"}
_V2_HINTS = {"timeouts": "in io.statefun.endpoints.v2/http timeouts go under 'transport' (e.g. transport.call)"}
_ASYNC_KEYS = ("call", "connect", "pool_ttl", "pool_size", "payload_max_bytes", "trust_cacerts", "client_cert", "client_key", "client_key_password")
_ASYNC_ONLY = {key: "only the async transport (io.statefun.transports.v1/async) has it; OkHttp takes timeouts.{call,connect,read,write}" for key in _ASYNC_KEYS}
_OKHTTP_ONLY = {key: "only the okhttp transport has it (timeouts.read/timeouts.write)" for key in ("read", "write")}
# the async transport's legacy nested `timeouts` block, and its defaults when the block is given (StateFun's)
_NESTED_TIMEOUTS = {"call": timedelta(minutes=1), "connect": timedelta(seconds=10)}
_TIMEOUT = duration(MAX_TIMEOUT, positive=True)


def _transport(fields: Fields) -> TransportSpec:
    type_node = fields.get("type")
    kind = TRANSPORT_ASYNC if type_node is None else type_node.parse(choice(TRANSPORT_ASYNC, TRANSPORT_OKHTTP))
    if kind is None:  # a wrong type (reported): the other keys cannot be judged
        fields.allow(*fields.keys())
        return TransportSpec.async_defaults()
    if kind == TRANSPORT_OKHTTP:
        transport = _okhttp_transport(fields)
        fields.finish(hints=_ASYNC_ONLY)
        return transport
    defaults = TransportSpec.async_defaults()
    call = fields.optional("call", _TIMEOUT, defaults.call)
    connect = fields.optional("connect", _TIMEOUT, defaults.connect)
    timeouts_node = fields.get("timeouts")
    if timeouts_node is not None:
        # StateFun's legacy nested form wins over call/connect, even where it leaves a key to its default;
        # a top-level key it overrides would be silently ignored, so that is reported
        timeouts = Fields(timeouts_node)
        call = timeouts.optional("call", _TIMEOUT, _NESTED_TIMEOUTS["call"])
        connect = timeouts.optional("connect", _TIMEOUT, _NESTED_TIMEOUTS["connect"])
        timeouts.finish(hints={key: "the async transport has only timeouts.call and timeouts.connect" for key in ("read", "write")})
        for key, default in _NESTED_TIMEOUTS.items():
            node = fields.get(key)
            if node is not None:
                node.report(
                    f"ignored by StateFun because 'timeouts' is given (timeouts.{key} wins, default {format_duration(default)}); "
                    f"set it in one place: timeouts.{key} or {key}"
                )
    transport = TransportSpec(
        type="async",
        call=call,
        connect=connect,
        pool_ttl=fields.optional("pool_ttl", duration(MAX_TIMEOUT), defaults.pool_ttl),
        pool_size=fields.optional("pool_size", integer(1, MAX_POOL_SIZE), defaults.pool_size),
        payload_max_bytes=fields.optional("payload_max_bytes", integer(1, MAX_PAYLOAD_BYTES), defaults.payload_max_bytes),
        trust_cacerts=fields.optional("trust_cacerts", file_path, None),
        client_cert=fields.optional("client_cert", file_path, None),
        client_key=fields.optional("client_key", file_path, None),
        client_key_password=fields.optional("client_key_password", file_path, None),
    )
    if fields.has("client_cert") != fields.has("client_key"):
        fields.node.report("client_cert and client_key go together (mutual TLS needs both): give both or neither")
    if fields.has("client_key_password") and not fields.has("client_key"):
        fields.node.report("client_key_password is the password of client_key: give client_key (and client_cert) too")
    fields.finish(hints=_OKHTTP_ONLY)
    return transport


def _okhttp_transport(fields: Fields) -> TransportSpec:
    """OkHttp settings: ``timeouts: {call, connect, read, write}``, all non-zero, none longer than call."""
    defaults = TransportSpec.okhttp_defaults()
    node = fields.get("timeouts")
    if node is None:
        return defaults
    timeouts = Fields(node)
    values: dict[str, timedelta] = {
        key: timeouts.optional(key, _TIMEOUT, getattr(defaults, key)) for key in ("call", "connect", "read", "write")
    }
    timeouts.finish()
    for key in ("connect", "read", "write"):
        if values[key] > values["call"]:
            given = "" if timeouts.has(key) else ", the default"
            timeouts.node.child(key, None).report(
                f"{key} ({format_duration(values[key])}{given}) is longer than call ({format_duration(values['call'])}): "
                f"OkHttp requires {key} <= call, so shorten {key} or lengthen call"
            )
    return dataclasses.replace(defaults, call=values["call"], connect=values["connect"], read=values["read"], write=values["write"])


def _status(node: Node) -> int:
    return integer(400, 599)(node)  # error statuses only: a 2xx is a success


def _retry(fields: Fields) -> RetryPolicy:
    """The pystatefun ``retry`` extension of an endpoint."""
    defaults = RetryPolicy()
    max_attempts = fields.optional("max_attempts", integer(1, MAX_RETRY_ATTEMPTS), None)
    # null: no limit of its own, so a call whose function raises is retried for the call budget (StateFun)
    function_error_max_attempts = None if fields.given_null("function_error_max_attempts") else fields.optional(
        "function_error_max_attempts", integer(1, MAX_RETRY_ATTEMPTS), defaults.function_error_max_attempts)
    initial = fields.optional("initial_backoff", duration(MAX_TIMEOUT), defaults.initial_backoff)
    maximum = fields.optional("max_backoff", duration(MAX_TIMEOUT), defaults.max_backoff)
    statuses = fields.optional("retryable_status", sequence(_status, example="408, 429, 503"), defaults.retryable_status)
    fields.finish()
    if maximum < initial:
        fields.node.report(
            f"max_backoff ({format_duration(maximum)}) is shorter than initial_backoff ({format_duration(initial)}): "
            "raise max_backoff or lower initial_backoff"
        )
    statuses = tuple(dict.fromkeys(statuses))  # without repeats, in the given order
    return RetryPolicy(max_attempts=max_attempts, function_error_max_attempts=function_error_max_attempts,
                       initial_backoff=initial, max_backoff=maximum, retryable_status=statuses)


def python_reference(node: Node) -> str:
    """``package.module:attribute``, the form ``pystatefun serve`` takes."""
    text = string(node).strip()
    module, sep, attribute = text.partition(":")
    if not sep or not _IDENTIFIER_PATH.fullmatch(module) or not _IDENTIFIER_PATH.fullmatch(attribute):
        raise Invalid(f"{text!r} is not a Python object reference: write 'package.module:attribute', e.g. 'greeter:functions'")
    return text


def parse_embedded(fields: Fields, ctx: Context) -> EmbeddedFunctions:
    """``pystatefun.v1/embedded``: functions of a ``StatefulFunctions`` run in the pystatefun process."""
    functions = fields.required("functions", selector, example="example/*")
    module = fields.required("module", python_reference, example="greeter:functions")
    fields.finish()
    if functions is None or module is None:
        raise Reported
    return EmbeddedFunctions(kind=KIND_EMBEDDED, functions=functions, module=module, base_dir=ctx.base_dir, origin=ctx.origin)
