"""Functions of the tracing tests: ``test/relay`` forwards each message to ``test/sink`` after the delay
(ms) the message names; ``test/sink`` counts what it gets, and raises while the file named by
$TRACING_TEST_BROKEN exists (its address parks until it is resumed)."""

from __future__ import annotations

import os
from datetime import timedelta

from pystatefun import Context, IntType, Message, StatefulFunctions, ValueSpec, message_builder

functions = StatefulFunctions()


@functions.bind("test/relay")
def relay(context: Context, message: Message) -> None:
    delay = message.as_int()
    context.send_after(timedelta(milliseconds=delay), message_builder("test/sink", context.address.id, int_value=delay))


@functions.bind("test/sink", specs=[ValueSpec("seen", IntType)])
def sink(context: Context, message: Message) -> None:
    if os.path.exists(os.environ.get("TRACING_TEST_BROKEN", "")):
        raise RuntimeError("broken on purpose")
    context.storage.seen = (context.storage.seen or 0) + 1
