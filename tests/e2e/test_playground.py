"""The playground ingress and egress over real HTTP: status codes, reasons, idempotency, long polls."""

import json
import threading
import time
from pathlib import Path

import pytest

from pystatefun import IntType, StringType

from .processes import Runtime, request

APP = Path(__file__).parent / "apps" / "counter"
STRING = "io.statefun.types/string"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    runtime = Runtime(APP / "module.yaml", tmp_path_factory.mktemp("playground") / "data").start()
    yield runtime
    runtime.stop()


def body(text: str) -> bytes:
    return StringType.serializer().serialize(text)


def drain(runtime: Runtime) -> list[dict]:
    records = []
    while (reply := runtime.take("counts", wait=0.5)).status == 200:
        records.append(json.loads(reply.body))
    return records


def test_accepted_message_is_processed_and_its_record_read_once(runtime):
    drain(runtime)
    reply = runtime.send("/crash/counter/a", STRING, body("hello"))
    assert reply.status == 202
    first = runtime.take("counts", wait=5)
    assert first.status == 200 and json.loads(first.body)["message"] == "hello"
    assert runtime.take("counts").status == 404


def test_post_works_too(runtime):
    drain(runtime)
    reply = request(runtime.ingress_port, "POST", "/crash/counter/p", body("x"), {"Content-Type": f"application/vnd.{STRING}"})
    assert reply.status == 202
    assert runtime.take("counts", wait=5).status == 200


def test_idempotency_key_makes_a_resubmission_a_no_op(runtime):
    drain(runtime)
    for _ in range(3):
        assert runtime.send("/crash/counter/idem", STRING, body("once"), key="key-1").status == 202
    records = drain(runtime)
    assert [r["message"] for r in records] == ["once"]
    assert runtime.send("/crash/counter/idem", STRING, body("twice"), key="key-2").status == 202
    assert [r["count"] for r in drain(runtime)] == [2]


def test_an_idempotency_key_reused_for_another_request_is_refused(runtime):
    """As Stripe's API does: a key names one request; another body, address or type under it is a client
    bug, answered 422 and not applied, while the first request's retries keep their answer."""
    drain(runtime)
    assert runtime.send("/crash/counter/reuse", STRING, body("first"), key="key-r").status == 202
    for path, typename, value in (("/crash/counter/reuse", STRING, body("other")),
                                  ("/crash/counter/elsewhere", STRING, body("first")),
                                  ("/crash/echo/reuse", STRING, body("first"))):
        refused = runtime.send(path, typename, value, key="key-r")
        assert refused.status == 422, refused.body
        assert b"'key-r' was used for another request" in refused.body
    assert runtime.send("/crash/counter/reuse", STRING, body("first"), key="key-r").status == 202
    assert [r["message"] for r in drain(runtime)] == ["first"]


def test_wrong_requests_get_a_status_and_a_reason(runtime):
    no_type = request(runtime.ingress_port, "PUT", "/crash/counter/a", body("x"), {"Content-Type": "application/json"})
    assert no_type.status == 415 and b"application/vnd.<namespace>/<name>" in no_type.body
    unknown = runtime.send("/crash/nobody/a", STRING, body("x"))
    assert unknown.status == 404 and b"no function type 'crash/nobody'" in unknown.body
    short = runtime.send("/crash/counter", STRING, body("x"))
    assert short.status == 404 and b"not a function address" in short.body
    get = request(runtime.ingress_port, "GET", "/crash/counter/a")
    assert get.status == 405 and get.headers.get("Allow") == "PUT, POST"
    bad_type = runtime.send("/crash/counter/a", "not-a-typename", body("x"))
    assert bad_type.status == 415


def test_a_body_that_is_not_a_value_of_its_built_in_type_is_refused_with_what_to_send(runtime):
    # curl -d 5 -H 'Content-Type: application/vnd.io.statefun.types/int': the text "5", not an IntWrapper
    refused = runtime.send("/crash/slow-answer/text", "io.statefun.types/int", b"5")
    assert refused.status == 400
    reason = refused.body.decode()
    assert reason.startswith("the body is not an io.statefun.types/int value")
    assert "send the protobuf encoding, or use pystatefun send ADDRESS --type io.statefun.types/int --json 5" in reason
    assert runtime.send("/crash/counter/text", STRING, b"plain text").status == 400
    # nothing was taken: the address answers its next (well-formed) message, it did not park
    answer = runtime.send("/crash/slow-answer/text?wait=10", "io.statefun.types/int", IntType.serializer().serialize(0))
    assert answer.status == 200 and IntType.serializer().deserialize(answer.body) == 1


def test_egress_unknown_topic_and_bad_wait(runtime):
    unknown = request(runtime.egress_port, "GET", "/nope")
    assert unknown.status == 404 and b"unknown topic 'nope'" in unknown.body
    assert request(runtime.egress_port, "GET", "/counts?wait=soon").status == 400
    assert request(runtime.egress_port, "POST", "/counts").status == 405


def test_long_poll_returns_when_a_record_arrives(runtime):
    drain(runtime)
    result = {}

    def poll():
        started = time.monotonic()
        reply = runtime.take("counts", wait=10)
        result["status"], result["waited"] = reply.status, time.monotonic() - started

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)
    assert runtime.send("/crash/counter/lp", STRING, body("late")).status == 202
    poller.join(15)
    assert result["status"] == 200 and result["waited"] >= 0.2
