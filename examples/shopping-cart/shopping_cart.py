"""A shopping cart with typed state: pydantic models and a dataclass, changed in place.

What pystatefun adds over the official SDK, in one example:

* ``make_json_type(typename, Model)``: ``message.as_type`` and state reads return model instances;
* state changed in place (``basket.items[sku] += n``) is saved without re-assigning it;
* assigning a wrong value to a state fails right there, with the state's name and type.

Run it with ``pystatefun run module.yaml`` (functions embedded) or serve it with
``pystatefun serve shopping_cart:functions`` for ``module-remote.yaml``; test it with ``pytest`` (test_cart.py).
"""

from __future__ import annotations

import dataclasses

import pydantic

from pystatefun import Context, Message, StatefulFunctions, ValueSpec, egress_message_builder, make_json_type, message_builder

functions = StatefulFunctions()


class AddToCart(pydantic.BaseModel):
    sku: str
    quantity: int = pydantic.Field(gt=0)


class Checkout(pydantic.BaseModel):
    pass


class Basket(pydantic.BaseModel):
    items: dict[str, int] = {}


class RequestItem(pydantic.BaseModel):
    quantity: int


@dataclasses.dataclass
class ItemAvailability:
    sku: str
    available: bool
    quantity: int


class Receipt(pydantic.BaseModel):
    user: str
    items: dict[str, int]


ADD_TO_CART = make_json_type("com.example/AddToCart", AddToCart)
CHECKOUT = make_json_type("com.example/Checkout", Checkout)
BASKET = make_json_type("com.example/Basket", Basket)
REQUEST_ITEM = make_json_type("com.example/RequestItem", RequestItem)
ITEM_AVAILABILITY = make_json_type("com.example/ItemAvailability", ItemAvailability)
RECEIPT = make_json_type("com.example/Receipt", Receipt)
RESTOCK = make_json_type("com.example/RestockItem", RequestItem)
RECEIPTS_EGRESS = make_json_type("io.statefun.playground/EgressRecord")


@functions.bind("com.example/stock", specs=[ValueSpec("stock", make_json_type("com.example/Stock", int))])
def stock(context: Context, message: Message) -> None:
    on_hand = context.storage.stock or 0
    if message.is_type(RESTOCK):
        context.storage.stock = on_hand + message.as_type(RESTOCK).quantity
        return
    request = message.as_type(REQUEST_ITEM)
    available = on_hand >= request.quantity
    if available:
        context.storage.stock = on_hand - request.quantity
    reply = ItemAvailability(sku=context.address.id, available=available, quantity=request.quantity)
    context.send(message_builder(context.caller.typename, context.caller.id, value=reply, value_type=ITEM_AVAILABILITY))


@functions.bind("com.example/user-shopping-cart", specs=[ValueSpec("basket", BASKET)])
def user_shopping_cart(context: Context, message: Message) -> None:
    if context.storage.basket is None:
        context.storage.basket = Basket()
    basket = context.storage.basket

    if message.is_type(ADD_TO_CART):
        add = message.as_type(ADD_TO_CART)
        context.send(message_builder("com.example/stock", add.sku, value=RequestItem(quantity=add.quantity), value_type=REQUEST_ITEM))
    elif message.is_type(ITEM_AVAILABILITY):
        availability = message.as_type(ITEM_AVAILABILITY)
        if availability.available:
            # changed in place: no `context.storage.basket = basket` needed
            basket.items[availability.sku] = basket.items.get(availability.sku, 0) + availability.quantity
    elif message.is_type(CHECKOUT):
        receipt = Receipt(user=context.address.id, items=dict(basket.items))
        record = {"topic": "receipts", "payload": receipt.model_dump_json()}
        context.send_egress(egress_message_builder("io.statefun.playground/egress", record, RECEIPTS_EGRESS))
        if context.caller is not None:  # a checkout request waiting for its answer (?wait=SECONDS)
            context.reply(value=receipt, value_type=RECEIPT)
        del context.storage.basket
    else:
        raise ValueError(f"unexpected message type {message.value_typename()}")
