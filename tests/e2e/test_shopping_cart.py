"""The shopping cart through the real HTTP ingress and egress, in three forms: our SDK embedded, our SDK
served remotely, and the official apache-flink-statefun SDK served remotely (tests/e2e/apps/official_cart,
the same functions written the official way). Cart and stock talk to each other through ``caller``."""

import json
import time

import pytest

from .processes import Runtime


def put(runtime: Runtime, function: str, id: str, typename: str, value: dict) -> None:
    reply = runtime.send(f"/com.example/{function}/{id}", f"com.example/{typename}", json.dumps(value).encode())
    assert reply.status == 202, reply.body


def receipt(runtime: Runtime) -> dict:
    reply = runtime.take("receipts", wait=15)
    assert reply.status == 200, reply.body
    return json.loads(reply.body)


def checkout_until(runtime: Runtime, user: str, expected: dict) -> None:
    """Checks out until the receipts of ``user`` add up to ``expected``.

    The cart hears back from the stock after the ingress answered 202, so a checkout may come before some
    answers: its receipt then holds part of the items and the rest go into the next basket. Either way
    the receipts must add up to exactly what the stock granted: nothing lost, nothing counted twice.
    """
    total: dict[str, int] = {}
    for _ in range(200):
        put(runtime, "user-shopping-cart", user, "Checkout", {})
        got = receipt(runtime)
        assert got["user"] == user
        for sku, quantity in got["items"].items():
            total[sku] = total.get(sku, 0) + quantity
        assert all(total[sku] <= expected.get(sku, 0) for sku in total), f"{user} got more than granted: {total}"
        if total == expected:
            return
        time.sleep(0.05)
    pytest.fail(f"{user}'s receipts add up to {total}, not {expected}")


def test_items_in_stock_reach_the_basket_and_checkout_emits_each_receipt_once(shop):
    put(shop, "stock", "socks", "RestockItem", {"quantity": 3})
    put(shop, "stock", "hat", "RestockItem", {"quantity": 1})
    put(shop, "user-shopping-cart", "alice", "AddToCart", {"sku": "socks", "quantity": 2})
    put(shop, "user-shopping-cart", "alice", "AddToCart", {"sku": "hat", "quantity": 1})
    put(shop, "user-shopping-cart", "alice", "AddToCart", {"sku": "socks", "quantity": 5})  # only 1 left: refused
    checkout_until(shop, "alice", {"socks": 2, "hat": 1})
    assert shop.take("receipts").status == 404  # each receipt appears once

    put(shop, "user-shopping-cart", "bob", "AddToCart", {"sku": "socks", "quantity": 1})  # the last pair
    put(shop, "user-shopping-cart", "bob", "AddToCart", {"sku": "hat", "quantity": 1})  # sold out
    checkout_until(shop, "bob", {"socks": 1})
    assert shop.take("receipts").status == 404


def test_the_stock_and_baskets_survive_a_crash(shop):
    put(shop, "stock", "socks", "RestockItem", {"quantity": 2})
    put(shop, "user-shopping-cart", "alice", "AddToCart", {"sku": "socks", "quantity": 1})
    shop.kill()
    shop.start()
    put(shop, "user-shopping-cart", "bob", "AddToCart", {"sku": "socks", "quantity": 1})
    put(shop, "user-shopping-cart", "carol", "AddToCart", {"sku": "gloves", "quantity": 1})  # never stocked
    checkout_until(shop, "alice", {"socks": 1})
    checkout_until(shop, "bob", {"socks": 1})
    put(shop, "user-shopping-cart", "carol", "Checkout", {})
    assert receipt(shop) == {"user": "carol", "items": {}}
