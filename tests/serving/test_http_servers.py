"""The ASGI app (under uvicorn), the aiohttp handler and `pystatefun serve`, over real HTTP."""

import pytest

from pystatefun import IntType
from pystatefun.wire.request_reply_pb2 import FromFunction

from support.protocol import request, typed
from .conftest import post

SERVERS = ["uvicorn_url", "aiohttp_url", "cli_url"]


@pytest.fixture(params=SERVERS)
def url(request):
    return request.getfixturevalue(request.param)


def test_invocation_round_trip(url):
    body = request("test/counter", "alice", [typed(IntType, 2), typed(IntType, 3)], state={"count": typed(IntType, 1)})
    reply = post(url + "/statefun", body)
    assert reply.status == 200
    assert reply.content_type == "application/octet-stream"
    result = FromFunction.FromString(reply.body).invocation_result
    assert IntType.serializer().deserialize(result.state_mutations[0].state_value.value) == 6
    assert [IntType.serializer().deserialize(m.argument.value) for m in result.outgoing_messages] == [3, 6]


def test_async_function_and_any_path(url):
    body = request("test/async-counter", "a", [typed(IntType, 0)] * 4, state={"count": None})
    reply = post(url + "/functions/async-counter", body, content_type=None)
    assert reply.status == 200
    value = FromFunction.FromString(reply.body).invocation_result.state_mutations[0].state_value.value
    assert IntType.serializer().deserialize(value) == 4


def test_state_negotiation_over_http(url):
    reply = post(url, request("test/counter", "alice", [typed(IntType, 1)]))
    assert reply.status == 200
    missing = FromFunction.FromString(reply.body).incomplete_invocation_context.missing_values
    assert [m.state_name for m in missing] == ["count"]


def test_get_is_405(url):
    reply = post(url + "/statefun", b"", method="GET")
    assert reply.status == 405
    assert reply.headers.get("Allow") == "POST"
    assert b"invoked with POST" in reply.body


def test_wrong_content_type_is_415(url):
    reply = post(url, b"{}", content_type="application/json")
    assert reply.status == 415
    assert b"application/octet-stream" in reply.body


def test_malformed_body_is_400(url):
    reply = post(url, b"\xff\xff\xff\xff")
    assert reply.status == 400
    assert b"not a StateFun ToFunction message" in reply.body
    empty = post(url, b"")
    assert empty.status == 400 and b"empty request body" in empty.body


def test_unknown_function_is_404(url):
    reply = post(url, request("test/nope", "1", [typed(IntType, 1)]))
    assert reply.status == 404
    assert b"no function is registered for type 'test/nope'" in reply.body


def test_raising_function_is_500_with_the_error(url):
    reply = post(url, request("test/failing", "1", [typed(IntType, 1)]))
    assert reply.status == 500
    assert b"RuntimeError: the function failed on purpose" in reply.body


@pytest.mark.parametrize("fixture", ["uvicorn_url", "aiohttp_url"])
def test_oversized_body_is_413(fixture, request):
    url = request.getfixturevalue(fixture)
    reply = post(url, b"\x00" * 5000)
    assert reply.status == 413
