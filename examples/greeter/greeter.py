"""The StateFun playground greeter, on pystatefun.

This is the official playground's Python greeter with one change: ``from pystatefun import ...``
instead of ``from statefun import ...``. Serve it with::

    pystatefun serve greeter:functions --port 8000
"""

import asyncio

from pystatefun import (
    Context,
    IntType,
    Message,
    StatefulFunctions,
    ValueSpec,
    egress_message_builder,
    make_json_type,
    message_builder,
)

GREET_REQUEST_TYPE = make_json_type(typename="example/GreetRequest")
EGRESS_RECORD_TYPE = make_json_type(typename="io.statefun.playground/EgressRecord")

functions = StatefulFunctions()


@functions.bind(typename="example/person", specs=[ValueSpec(name="visits", type=IntType)])
async def person(context: Context, message: Message):
    # update the visit count.
    request = message.as_type(GREET_REQUEST_TYPE)
    visits = context.storage.visits or 0
    visits += 1
    context.storage.visits = visits

    # enrich the request with the number of visits.
    request["visits"] = visits

    # next, we will forward a message to a special greeter function,
    # that will compute a super-doper-personalized greeting based on the
    # number of visits that this person has.
    context.send(
        message_builder(target_typename="example/greeter", target_id=request["name"], value=request, value_type=GREET_REQUEST_TYPE)
    )


@functions.bind(typename="example/greeter")
async def greeter(context: Context, message: Message):
    request = message.as_type(GREET_REQUEST_TYPE)
    person_name = request["name"]
    visits = request["visits"]

    greeting = await compute_fancy_greeting(person_name, visits)

    egress_record = {"topic": "greetings", "payload": greeting}

    context.send_egress(
        egress_message_builder(target_typename="io.statefun.playground/egress", value=egress_record, value_type=EGRESS_RECORD_TYPE)
    )


async def compute_fancy_greeting(name: str, seen: int):
    """
    Compute a personalized greeting, based on the number of times this @name had visited.
    We simulate a remote service latency here.
    """
    templates = ["", "Welcome %s", "Nice to see you again %s", "Third time is a charm %s"]
    if seen < len(templates):
        greeting = templates[seen] % name
    else:
        greeting = f"Nice to see you at the {seen}-nth time {name}!"

    await asyncio.sleep(0.01)
    return greeting
