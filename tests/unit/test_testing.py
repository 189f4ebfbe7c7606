"""pystatefun.testing: in-process invocation with state, caller, a manual clock, TTLs and delays."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from pystatefun import (
    IntType,
    StatefulFunctions,
    StringType,
    ValueSpec,
    kafka_egress_message,
    make_json_type,
    message_builder,
)
from pystatefun.testing import FunctionTester, ManualClock

REMINDER = make_json_type("com.example/Reminder")


def build() -> StatefulFunctions:
    functions = StatefulFunctions()

    @functions.bind("com.example/counter", specs=[
        ValueSpec("count", IntType),
        ValueSpec("last_caller", StringType, expire_after_write=timedelta(minutes=5)),
        ValueSpec("session", StringType, expire_after_call=timedelta(seconds=30)),
    ])
    def counter(context, message):
        context.storage.count = (context.storage.count or 0) + message.as_int()
        if context.caller:
            context.storage.last_caller = context.caller.id
        if context.storage.session is None:
            context.storage.session = "new"
        context.send(message_builder("com.example/sink", context.address.id, int_value=context.storage.count))
        context.send_egress(kafka_egress_message("com.example/out", "counts", str(context.storage.count), key=context.address.id))

    @functions.bind("com.example/reminder")
    def reminder(context, message):
        request = message.as_type(REMINDER)
        if request["action"] == "set":
            context.send_after(timedelta(seconds=request["after"]), message_builder("com.example/counter", request["who"], int_value=1), request["token"])
        else:
            context.cancel_delayed_message(request["token"])

    @functions.bind("com.example/async", specs=[ValueSpec("seen", IntType)])
    async def async_fn(context, message):
        await asyncio.sleep(0)
        context.storage.seen = (context.storage.seen or 0) + 1

    return functions


def test_invoke_with_state_and_caller_then_assert_state_messages_and_egress():
    tester = FunctionTester(build())
    result = tester.invoke("com.example/counter", "alice", 5, state={"count": 10}, caller="com.example/user/bob")
    assert result.state == {"count": 15, "last_caller": "bob", "session": "new"}
    assert [(m.target_typename, m.target_id, m.as_int()) for m in result.messages] == [("com.example/sink", "alice", 15)]
    assert [e.typename for e in result.egress] == ["com.example/out"]
    assert tester.state("com.example/counter", "alice") == result.state


def test_state_is_kept_between_calls_and_replaced_by_state_argument():
    tester = FunctionTester(build())
    tester.invoke("com.example/counter", "a", 1)
    assert tester.invoke("com.example/counter", "a", 2).state["count"] == 3
    assert tester.invoke("com.example/counter", "a", 2, state={"count": 100}).state["count"] == 102
    assert tester.state("com.example/counter", "b") == {}


def test_ttl_follows_the_manual_clock():
    tester = FunctionTester(build(), ManualClock(datetime(2030, 1, 1, tzinfo=timezone.utc)))
    tester.invoke("com.example/counter", "a", 1, caller=("com.example/user", "bob"))
    tester.clock.advance(timedelta(seconds=29))
    tester.invoke("com.example/counter", "a", 1)  # the call refreshes 'session' (after call)
    tester.clock.advance(timedelta(seconds=29))
    assert "session" in tester.state("com.example/counter", "a")
    tester.clock.advance(timedelta(seconds=1))
    assert "session" not in tester.state("com.example/counter", "a")
    tester.clock.advance(timedelta(minutes=4, seconds=1))
    assert "last_caller" not in tester.state("com.example/counter", "a")  # 5 minutes after it was written
    assert tester.state("com.example/counter", "a") == {"count": 2}


def test_delayed_messages_fall_due_with_the_clock_and_can_be_cancelled():
    tester = FunctionTester(build())
    set_a = {"action": "set", "after": 10, "who": "alice", "token": "t1"}
    set_b = {"action": "set", "after": 5, "who": "bob", "token": "t2"}
    first = tester.invoke("com.example/reminder", "r", set_a, value_type=REMINDER)
    assert [(d.delay, d.cancellation_token, d.message.target_id) for d in first.delayed] == [(timedelta(seconds=10), "t1", "alice")]
    tester.invoke("com.example/reminder", "r", set_b, value_type=REMINDER)
    assert [d.message.target_id for d in tester.pending()] == ["bob", "alice"]
    cancelled = tester.invoke("com.example/reminder", "r", {"action": "cancel", "token": "t1"}, value_type=REMINDER)
    assert cancelled.cancellations == ["t1"]
    assert tester.advance(4) == []
    due = tester.advance(1)
    assert [(d.message.target_id, d.sender.typename, d.due) for d in due] == [("bob", "com.example/reminder", tester.clock.now())]
    assert tester.pending() == []
    delivered = tester.deliver(due[0])
    assert delivered.state["count"] == 1 and delivered.state["last_caller"] == "r"


def test_a_second_pending_message_with_the_same_token_is_an_error():
    tester = FunctionTester(build())
    request = {"action": "set", "after": 5, "who": "a", "token": "same"}
    tester.invoke("com.example/reminder", "r", request, value_type=REMINDER)
    with pytest.raises(ValueError, match="second delayed message with the pending cancellation token 'same'"):
        tester.invoke("com.example/reminder", "r", request, value_type=REMINDER)
    # another sender may use the same token: tokens are scoped to the sending address
    tester.invoke("com.example/reminder", "other", request, value_type=REMINDER)


def test_send_delivers_a_message_a_function_sent():
    functions = build()
    functions.register("com.example/sink", lambda context, message: context.send(
        message_builder("com.example/x", "y", int_value=message.as_int() * 2)))
    tester = FunctionTester(functions)
    sent = tester.invoke("com.example/counter", "a", 4).messages[0]
    assert tester.send(sent, caller="com.example/counter/a").messages[0].as_int() == 8


def test_async_functions_both_ways():
    tester = FunctionTester(build())
    assert tester.invoke("com.example/async", "a", 1).state == {"seen": 1}
    assert asyncio.run(tester.invoke_async("com.example/async", "a", 1)).state == {"seen": 2}


def test_errors_say_what_to_do():
    tester = FunctionTester(build())
    with pytest.raises(TypeError, match="pass value_type="):
        tester.invoke("com.example/counter", "a", {"not": "typed"})
    with pytest.raises(KeyError, match="state 'nope' is not declared by function 'com.example/counter'"):
        tester.invoke("com.example/counter", "a", 1, state={"nope": 1})
    with pytest.raises(TypeError, match="IntType values must be int"):
        tester.invoke("com.example/counter", "a", 1, state={"count": "x"})
    with pytest.raises(ValueError, match="namespace/name/id"):
        tester.invoke("com.example/counter", "a", 1, caller="bob")
    with pytest.raises(KeyError, match="no function is registered"):
        tester.invoke("com.example/none", "a", 1)
    with pytest.raises(ValueError, match="only moves forward"):
        tester.clock.advance(-1)


def test_reply_answers_the_caller_and_without_a_caller_says_why():
    functions = StatefulFunctions()

    @functions.bind("com.example/echo")
    def echo(context, message):
        context.reply(str_value=f"echo {message.as_string()}")

    tester = FunctionTester(functions)
    result = tester.invoke("com.example/echo", "a", "hi", caller="pystatefun/reply/r1")
    (answer,) = result.messages
    assert (answer.target_typename, answer.target_id, answer.as_string()) == ("pystatefun/reply", "r1", "echo hi")
    with pytest.raises(ValueError, match="no caller to answer"):
        tester.invoke("com.example/echo", "a", "hi")
