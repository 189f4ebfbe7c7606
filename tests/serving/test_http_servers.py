"""The ASGI app (under uvicorn), the aiohttp handler and `pystatefun serve`, over real HTTP."""

import concurrent.futures
import time

import pytest

from pystatefun import IntType
from pystatefun.wire.request_reply_pb2 import FromFunction

from support.protocol import request, typed
from pystatefun.serving.threads import SLOW_CALL_SECONDS, SLOW_CALLS_TO_MOVE
from .app import SECRET, SLOW_MS
from .conftest import post

SERVERS = ["uvicorn_url", "aiohttp_url", "cli_url"]
FAST_CEILING = 1.5  # seconds a fast request may take beside a slow sync function (generous: noisy machine)
assert FAST_CEILING < SLOW_MS / 1000 - 0.5  # else the test could not tell off-loop from on-loop


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


@pytest.mark.parametrize("server", SERVERS)
def test_a_raising_function_is_500_naming_the_type_and_its_message_is_only_in_the_log(server, request, caplog):
    url = request.getfixturevalue(server)
    reply = post(url, request_for("test/failing"))
    assert reply.status == 500
    assert b"the function raised RuntimeError" in reply.body
    assert b"server's log" in reply.body
    assert SECRET.encode() not in reply.body and b"on purpose" not in reply.body
    if server == "cli_url":  # another process: its log is its output, written on its own time
        log = request.getfixturevalue("cli_log")
        deadline = time.monotonic() + 5
        while SECRET not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = log.read_text()
    else:
        text = caplog.text
    assert f"RuntimeError: the function failed on purpose, connecting with {SECRET}" in text
    assert "Traceback" in text and 'raise RuntimeError(f"the function failed on purpose' in text


def test_a_slow_synchronous_function_does_not_hold_other_requests(url):
    """A sync function that has held the event loop SLOW_CALLS_TO_MOVE times runs off it from then on: a
    fast request sent while it blocks for SLOW_MS is answered at once. On the loop, the fast one would wait
    about SLOW_MS - 0.2 s; the ceiling is FAST_CEILING (the liveness check asks for well under a second;
    the machine is noisy)."""
    showing_itself_slow = int(SLOW_CALL_SECONDS * 1000) * 3
    for _ in range(SLOW_CALLS_TO_MOVE):
        assert post(url, request_for("test/slow", value=showing_itself_slow)).status == 200
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(timed_post, url, request_for("test/slow", value=SLOW_MS))
        time.sleep(0.2)  # the slow request is in the function by now (sent earlier, the test passes vacuously)
        fast = pool.submit(timed_post, url, request_for("test/counter", state={"count": None}))
        (slow_reply, _), (fast_reply, fast_seconds) = slow.result(timeout=30), fast.result(timeout=30)
    assert slow_reply.status == 200 and fast_reply.status == 200
    assert fast_seconds < FAST_CEILING


def request_for(typename, state=None, value=1):
    return request(typename, "1", [typed(IntType, value)], state=state or {})


def timed_post(url, body):
    """The reply and how long it took in seconds."""
    started = time.monotonic()
    reply = post(url, body)
    return reply, time.monotonic() - started



@pytest.mark.parametrize("fixture", ["uvicorn_url", "aiohttp_url"])
def test_oversized_body_is_413(fixture, request):
    url = request.getfixturevalue(fixture)
    reply = post(url, b"\x00" * 5000)
    assert reply.status == 413
