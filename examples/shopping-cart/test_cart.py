"""The shopping cart, tested in-process with pystatefun.testing (no server, no runtime)."""

import json

from shopping_cart import (
    ADD_TO_CART,
    CHECKOUT,
    ITEM_AVAILABILITY,
    RECEIPT,
    REQUEST_ITEM,
    RESTOCK,
    AddToCart,
    Basket,
    Checkout,
    ItemAvailability,
    Receipt,
    RequestItem,
    functions,
)

from pystatefun.testing import FunctionTester


def test_add_to_cart_reserves_stock_then_fills_the_basket_and_checkout_emits_a_receipt():
    tester = FunctionTester(functions)
    tester.invoke("com.example/stock", "socks", RequestItem(quantity=5), value_type=RESTOCK)

    ask = tester.invoke("com.example/user-shopping-cart", "alice", AddToCart(sku="socks", quantity=2), value_type=ADD_TO_CART)
    (request,) = ask.messages
    answer = tester.send(request, caller="com.example/user-shopping-cart/alice")
    assert answer.state == {"stock": 3}
    (availability,) = answer.messages
    assert availability.target_id == "alice"

    filled = tester.send(availability, caller="com.example/stock/socks")
    assert filled.state == {"basket": Basket(items={"socks": 2})}

    checkout = tester.invoke("com.example/user-shopping-cart", "alice", Checkout(), value_type=CHECKOUT)
    (record,) = checkout.egress
    assert json.loads(json.loads(record.raw_value())["payload"]) == {"user": "alice", "items": {"socks": 2}}
    assert checkout.state == {}


def test_a_waiting_checkout_request_gets_the_receipt_as_its_answer():
    tester = FunctionTester(functions)
    tester.invoke("com.example/user-shopping-cart", "carol", Checkout(), value_type=CHECKOUT)  # no caller: no reply
    checkout = tester.invoke("com.example/user-shopping-cart", "carol", Checkout(), value_type=CHECKOUT,
                             caller="pystatefun/reply/request-1")
    (answer,) = checkout.messages
    assert answer.target_id == "request-1"
    assert answer.as_type(RECEIPT) == Receipt(user="carol", items={})


def test_unavailable_items_are_not_added():
    tester = FunctionTester(functions)
    tester.invoke("com.example/user-shopping-cart", "bob", AddToCart(sku="hat", quantity=1), value_type=ADD_TO_CART)
    answer = tester.invoke("com.example/stock", "hat", RequestItem(quantity=1), value_type=REQUEST_ITEM, caller="com.example/user-shopping-cart/bob")
    assert answer.messages[0].as_type(ITEM_AVAILABILITY) == ItemAvailability(sku="hat", available=False, quantity=1)
    assert tester.send(answer.messages[0]).state == {"basket": Basket()}

