"""Request/reply from outside through the real playground ingress: a request with ?wait=SECONDS is
answered by the first message the function sends to its caller."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pystatefun import IntType, StringType

from .processes import Runtime, request

APP = Path(__file__).parent / "apps" / "counter"
INT = "io.statefun.types/int"
STRING = "io.statefun.types/string"


@pytest.fixture
def app(tmp_path):
    runtime = Runtime(APP / "module.yaml", tmp_path / "data").start()
    yield runtime
    runtime.stop()


def checkout(runtime: Runtime, user: str, key: str | None = None):
    return runtime.send(f"/com.example/user-shopping-cart/{user}?wait=10", "com.example/Checkout", b"{}", key=key)


def test_checkout_answers_with_the_receipt_in_every_form(shop):
    restock = shop.send("/com.example/stock/socks", "com.example/RestockItem", b'{"quantity": 5}')
    assert restock.status == 202
    add = shop.send("/com.example/user-shopping-cart/dave", "com.example/AddToCart", b'{"sku": "socks", "quantity": 2}')
    assert add.status == 202
    for _ in range(100):  # the stock answers the cart after the 202; check out once the basket has it
        answer = checkout(shop, "dave")
        assert answer.status == 200, answer.body
        assert answer.headers["Content-Type"] == "application/vnd.com.example/Receipt"
        receipt = json.loads(answer.body)
        assert receipt["user"] == "dave"
        if receipt["items"]:
            break
    assert receipt["items"] == {"socks": 2}


def test_an_idempotent_retry_gets_the_same_answer_and_checks_out_once(shop):
    shop.send("/com.example/stock/hat", "com.example/RestockItem", b'{"quantity": 1}')
    first = checkout(shop, "erin", key="checkout-erin-1")
    again = checkout(shop, "erin", key="checkout-erin-1")
    assert first.status == again.status == 200
    assert again.body == first.body and again.headers["Content-Type"] == first.headers["Content-Type"]
    assert json.loads(shop.take("receipts", wait=10).body)["user"] == "erin"
    assert shop.take("receipts", wait=1).status == 404  # one checkout, one receipt


def test_a_timed_out_request_is_processed_once_and_its_retry_gets_the_answer(app):
    path = "/crash/slow-answer/x"
    body = IntType.serializer().serialize(2)  # the function answers 2 s after it runs
    timed_out = app.send(f"{path}?wait=0.3", INT, body, key="slow-1")
    assert timed_out.status == 504 and b"processed exactly once" in timed_out.body
    answer = app.send(f"{path}?wait=10", INT, body, key="slow-1")  # the retry waits for the same reply
    assert answer.status == 200 and answer.headers["Content-Type"] == f"application/vnd.{INT}"
    assert IntType.serializer().deserialize(answer.body) == 1
    again = app.send(f"{path}?wait=10", INT, body, key="slow-1")
    assert IntType.serializer().deserialize(again.body) == 1  # stored: no second run
    fresh = app.send(f"{path}?wait=10", INT, IntType.serializer().serialize(0), key="slow-2")
    assert IntType.serializer().deserialize(fresh.body) == 2  # the first message counted once


def test_the_answer_of_a_keyed_request_survives_a_crash(app):
    body = IntType.serializer().serialize(0)
    answer = app.send("/crash/slow-answer/y?wait=10", INT, body, key="crash-1")
    assert answer.status == 200
    app.kill()
    app.start()
    again = app.send("/crash/slow-answer/y?wait=10", INT, body, key="crash-1")
    assert (again.status, again.body) == (200, answer.body)


def test_bad_waits_and_unknown_targets(app):
    body = IntType.serializer().serialize(0)
    for wait in ("0", "-1", "soon", "301"):
        reply = app.send(f"/crash/slow-answer/z?wait={wait}", INT, body)
        assert reply.status == 400 and b"wait must be" in reply.body
    assert app.send("/crash/nobody/z?wait=1", INT, body).status == 404


def test_a_waiting_request_whose_address_parks_is_answered_at_once_with_the_reason(app):
    poison = StringType.serializer().serialize("poison")
    answer = app.send("/crash/fragile/w?wait=30", STRING, poison)
    assert answer.status == 500, answer.body  # not a 504 after 30 s
    body = answer.body.decode()
    assert "the message was accepted, but its address crash/fragile/w is parked" in body
    assert "nothing is lost" in body and "RuntimeError: cannot digest poison" in body
    assert "pystatefun resume crash/fragile/w" in body and "POST /parked/crash/fragile/w/skip" in body
    # a request to the address while it is parked learns it at once too
    later = app.send("/crash/fragile/w?wait=30", STRING, StringType.serializer().serialize("next"))
    assert later.status == 500 and "crash/fragile/w is parked" in later.body.decode()
    parked = json.loads(request(app.admin_port, "GET", "/parked").body)
    assert parked == [{"address": "crash/fragile/w", "reason": parked[0]["reason"], "waiting_messages": 2}]


def test_a_keyed_retry_of_a_request_held_at_a_parked_address_is_answered_at_once(app):
    poison = StringType.serializer().serialize("poison")
    first = app.send("/crash/fragile/k?wait=30", STRING, poison, key="poison-1")
    assert first.status == 500 and "crash/fragile/k is parked" in first.body.decode()
    retry = app.send("/crash/fragile/k?wait=30", STRING, poison, key="poison-1")  # not a 504 after 30 s
    assert retry.status == 500, retry.body
    assert "crash/fragile/k is parked" in retry.body.decode() and "cannot digest poison" in retry.body.decode()
    parked = json.loads(request(app.admin_port, "GET", "/parked").body)
    assert [p["waiting_messages"] for p in parked if p["address"] == "crash/fragile/k"] == [1]  # not sent twice
