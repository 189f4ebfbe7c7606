"""The shopping cart of examples/shopping-cart (on the PYTHONPATH) with a gate in front of its stock: while
the file named by $TRACING_TEST_GATE exists, a stock invocation writes its process id into
``<gate>.waiting``, logs that it waits, and waits (asynchronously: the runtime commits meanwhile), so that a
test can kill -9 that process in the middle of a request."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import shopping_cart
from pystatefun import Context, Message, StatefulFunctions, ValueSpec, make_json_type

log = logging.getLogger("gated_cart")
functions = StatefulFunctions()
functions.bind("com.example/user-shopping-cart", specs=[ValueSpec("basket", shopping_cart.BASKET)])(
    shopping_cart.user_shopping_cart)


@functions.bind("com.example/stock", specs=[ValueSpec("stock", make_json_type("com.example/Stock", int))])
async def stock(context: Context, message: Message) -> None:
    gate = Path(os.environ.get("TRACING_TEST_GATE", "/nonexistent"))
    if gate.exists() and not message.is_type(shopping_cart.RESTOCK):
        Path(f"{gate}.waiting").write_text(str(os.getpid()))
        log.warning("stock %s waits at its gate", context.address.id)
        for _ in range(1200):  # a minute at most
            if not gate.exists():
                break
            await asyncio.sleep(0.05)
    shopping_cart.stock(context, message)
