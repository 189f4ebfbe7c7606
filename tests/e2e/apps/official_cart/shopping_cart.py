"""The shopping cart of examples/shopping-cart written for the OFFICIAL apache-flink-statefun SDK, the
way its users write it: plain JSON dicts, state re-assigned after each change. Same typenames and JSON
fields as ours, so the runtime, the ingress requests and the receipts are the same."""

import json

from statefun import StatefulFunctions, ValueSpec, egress_message_builder, make_json_type, message_builder

functions = StatefulFunctions()

ADD_TO_CART = make_json_type("com.example/AddToCart")
CHECKOUT = make_json_type("com.example/Checkout")
BASKET = make_json_type("com.example/Basket")
REQUEST_ITEM = make_json_type("com.example/RequestItem")
ITEM_AVAILABILITY = make_json_type("com.example/ItemAvailability")
RESTOCK = make_json_type("com.example/RestockItem")
STOCK = make_json_type("com.example/Stock")
EGRESS_RECORD = make_json_type("io.statefun.playground/EgressRecord")
RECEIPT = make_json_type("com.example/Receipt")


@functions.bind("com.example/stock", specs=[ValueSpec("stock", STOCK)])
def stock(context, message):
    on_hand = context.storage.stock or 0
    if message.is_type(RESTOCK):
        context.storage.stock = on_hand + message.as_type(RESTOCK)["quantity"]
        return
    quantity = message.as_type(REQUEST_ITEM)["quantity"]
    available = on_hand >= quantity
    if available:
        context.storage.stock = on_hand - quantity
    reply = {"sku": context.address.id, "available": available, "quantity": quantity}
    context.send(message_builder(context.caller.typename, context.caller.id, value=reply, value_type=ITEM_AVAILABILITY))


@functions.bind("com.example/user-shopping-cart", specs=[ValueSpec("basket", BASKET)])
def user_shopping_cart(context, message):
    basket = context.storage.basket or {"items": {}}
    if message.is_type(ADD_TO_CART):
        add = message.as_type(ADD_TO_CART)
        request = {"quantity": add["quantity"]}
        context.send(message_builder("com.example/stock", add["sku"], value=request, value_type=REQUEST_ITEM))
    elif message.is_type(ITEM_AVAILABILITY):
        availability = message.as_type(ITEM_AVAILABILITY)
        if availability["available"]:
            items = basket["items"]
            items[availability["sku"]] = items.get(availability["sku"], 0) + availability["quantity"]
            context.storage.basket = basket
    elif message.is_type(CHECKOUT):
        receipt = {"user": context.address.id, "items": basket["items"]}
        record = {"topic": "receipts", "payload": json.dumps(receipt)}
        context.send_egress(egress_message_builder("io.statefun.playground/egress", record, EGRESS_RECORD))
        if context.caller is not None:  # a checkout request waiting for its answer
            context.send(message_builder(context.caller.typename, context.caller.id, value=receipt, value_type=RECEIPT))
        del context.storage.basket
    else:
        raise ValueError(f"unexpected message type {message.value_typename()}")
