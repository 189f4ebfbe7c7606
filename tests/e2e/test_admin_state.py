"""State inspection and repair through the admin API, read back by the function itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pystatefun import StringType

from .processes import Runtime, request

APP = Path(__file__).parent / "apps" / "counter"
CART = Path(__file__).parents[2] / "examples" / "shopping-cart"


@pytest.fixture
def app(tmp_path):
    runtime = Runtime(APP / "module.yaml", tmp_path / "data").start()
    yield runtime
    runtime.stop()


def admin(runtime: Runtime, method: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else b""
    reply = request(runtime.admin_port, method, path, data, {"Content-Type": "application/json"} if body else None)
    return reply.status, json.loads(reply.body)


def count(runtime: Runtime, key: str, message: str) -> int:
    body = StringType.serializer().serialize(message)
    assert runtime.send(f"/crash/counter/{key}", "io.statefun.types/string", body).status == 202
    return json.loads(runtime.take("counts", wait=10).body)["count"]


def test_state_is_shown_repaired_and_read_back_by_the_function(app):
    assert count(app, "k", "m1") == 1
    status, shown = admin(app, "GET", "/state/crash/counter/k")
    assert status == 200
    assert shown == {"address": "crash/counter/k", "state": {"count": {
        "typename": "io.statefun.types/int", "value_base64": "DQEAAAA=", "value": 1, "expires_at_ms": None}}}

    status, shown = admin(app, "PUT", "/state/crash/counter/k", {"count": {"value": 41}})
    assert status == 200 and shown["state"]["count"]["value"] == 41
    assert count(app, "k", "m2") == 42  # the function reads the repaired value

    app.kill()  # the repair was committed
    app.start()
    assert admin(app, "GET", "/state/crash/counter/k")[1]["state"]["count"]["value"] == 42

    assert admin(app, "DELETE", "/state/crash/counter/k") == (200, {"address": "crash/counter/k", "state": {}})
    assert count(app, "k", "m3") == 1


def test_bad_state_requests_say_what_to_fix(app):
    count(app, "k", "m1")
    status, error = admin(app, "PUT", "/state/crash/counter/k", {"cuont": {"value": 1}})
    assert status == 400 and "no state 'cuont'" in error["error"] and "count" in error["error"]
    status, error = admin(app, "PUT", "/state/crash/counter/k", {"count": {"value": "many"}})
    assert status == 400 and "io.statefun.types/int" in error["error"]
    status, error = admin(app, "PUT", "/state/crash/counter/k", {"count": {"value_base64": "%%%"}})
    assert status == 400 and "base64" in error["error"]
    status, error = admin(app, "PUT", "/state/crash/counter/k", {"count": 5})
    assert status == 400 and "exactly one of 'value'" in error["error"]
    assert admin(app, "GET", "/state/crash/nobody/k")[0] == 404
    assert admin(app, "GET", "/state/crash/counter/k")[1]["state"]["count"]["value"] == 1  # unchanged


def test_a_write_the_embedded_function_could_not_read_through_its_typed_state_is_refused(tmp_path):
    """The shopping cart's stock is make_json_type("com.example/Stock", int), its basket a pydantic model."""
    shop = Runtime(CART / "module.yaml", tmp_path / "data").start()
    try:
        restock = shop.send("/com.example/stock/socks", "com.example/RestockItem", b'{"quantity": 5}')
        assert restock.status == 202
        status, error = admin(shop, "PUT", "/state/com.example/stock/socks", {"stock": {"value": "many"}})
        assert status == 400
        assert error["error"] == ("state 'stock' is of type com.example/Stock, and the function cannot read this "
                                  "value: Input should be a valid integer, unable to parse string as an integer")
        status, error = admin(shop, "PUT", "/state/com.example/user-shopping-cart/ann",
                              {"basket": {"value": {"items": {"socks": "two"}}}})
        assert status == 400 and "items.socks: Input should be a valid integer" in error["error"]
        status, error = admin(shop, "PUT", "/state/com.example/stock/socks", {"stock": {"value_base64": "Im1hbnki"}})
        assert status == 400 and "cannot read this value" in error["error"]  # "many" as bytes: the same check

        assert admin(shop, "PUT", "/state/com.example/stock/socks", {"stock": {"value": 7}})[0] == 200
        add = shop.send("/com.example/user-shopping-cart/ann", "com.example/AddToCart", b'{"sku": "socks", "quantity": 7}')
        assert add.status == 202
        for _ in range(100):  # the stock answers the cart after the 202: the repaired 7 were available
            stock = admin(shop, "GET", "/state/com.example/stock/socks")[1]["state"]["stock"]["value"]
            if stock == 0:
                break
            shop.take("receipts", wait=0.05)
        assert stock == 0 and admin(shop, "GET", "/parked") == (200, [])
    finally:
        shop.stop()
