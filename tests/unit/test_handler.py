"""RequestReplyHandler: negotiation, sequential batches, net mutations, effects, storage and errors."""

import asyncio
import enum
import math
import struct
from datetime import timedelta

import pydantic
import pytest

from pystatefun import (
    BoolType,
    DoubleType,
    FloatType,
    IntType,
    LongType,
    MalformedRequestError,
    RequestReplyHandler,
    StatefulFunctions,
    StateTypeMismatchError,
    StringType,
    ValueSpec,
    egress_message_builder,
    make_json_type,
    message_builder,
)
from pystatefun.wire.request_reply_pb2 import FromFunction

from support.protocol import reply, request, typed

MODIFY = FromFunction.PersistedValueMutation.MODIFY
DELETE = FromFunction.PersistedValueMutation.DELETE
CART = make_json_type("com.example/Cart")


def counter_functions() -> StatefulFunctions:
    functions = StatefulFunctions()

    @functions.bind("com.example/counter", specs=[ValueSpec("count", IntType)])
    def counter(context, message):
        context.storage.count = (context.storage.count or 0) + message.as_int()
        context.send(message_builder("com.example/sink", context.address.id, int_value=context.storage.count))

    return functions


def test_missing_state_is_negotiated_without_running_anything():
    functions = StatefulFunctions()
    ran = []

    @functions.bind("a/f", specs=[
        ValueSpec("plain", IntType),
        ValueSpec("by_call", StringType, expire_after_call=timedelta(seconds=3)),
        ValueSpec("by_write", CART, expire_after_write=timedelta(minutes=1)),
    ])
    def f(context, message):
        ran.append(message)

    out = reply(RequestReplyHandler(functions).handle_sync(request("a/f", "1", [typed(IntType, 1)], state={"plain": None})))
    assert not ran
    assert out.WhichOneof("response") == "incomplete_invocation_context"
    missing = out.incomplete_invocation_context.missing_values
    Mode = FromFunction.ExpirationSpec.ExpireMode
    assert [(m.state_name, m.type_typename, m.expiration_spec.mode, m.expiration_spec.expire_after_millis) for m in missing] == [
        ("by_call", StringType.typename, Mode.AFTER_INVOKE, 3000),
        ("by_write", "com.example/Cart", Mode.AFTER_WRITE, 60000),
    ]


def test_batch_is_applied_sequentially_with_net_mutations_and_all_effects_in_order():
    handler = RequestReplyHandler(counter_functions())
    data = request("com.example/counter", "alice", [typed(IntType, 1), typed(IntType, 2), typed(IntType, 3)],
                   state={"count": typed(IntType, 10)})
    out = reply(handler.handle_sync(data)).invocation_result
    assert [(m.mutation_type, m.state_name, IntType.serializer().deserialize(m.state_value.value)) for m in out.state_mutations] == [
        (MODIFY, "count", 16)
    ]
    assert [IntType.serializer().deserialize(m.argument.value) for m in out.outgoing_messages] == [11, 13, 16]
    assert {(m.target.namespace, m.target.type, m.target.id) for m in out.outgoing_messages} == {("com.example", "sink", "alice")}


def test_unchanged_state_produces_no_mutation_and_no_effects_an_empty_reply():
    functions = StatefulFunctions()
    functions.register("a/f", lambda context, message: context.storage.count, [ValueSpec("count", IntType)])
    data = RequestReplyHandler(functions).handle_sync(request("a/f", "1", [typed(IntType, 1)], state={"count": typed(IntType, 4)}))
    assert data == b""  # as the official SDK: no oneof set, which the runtime reads as an empty result


def test_delete_and_delayed_messages_cancellations_and_egress():
    functions = StatefulFunctions()

    @functions.bind("a/f", specs=[ValueSpec("name", StringType)])
    def f(context, message):
        del context.storage.name
        context.send_after(timedelta(milliseconds=1500), message_builder("a/g", "x", str_value="later"), "tok-1")
        context.send_after(timedelta(seconds=1), message_builder("a/g", "y", str_value="no token"))
        context.cancel_delayed_message("tok-0")
        context.send_egress(egress_message_builder("a/out", "bye", StringType))

    out = reply(RequestReplyHandler(functions).handle_sync(
        request("a/f", "1", [typed(StringType, "x")], state={"name": typed(StringType, "bob")}))).invocation_result
    assert [(m.mutation_type, m.state_name, m.HasField("state_value")) for m in out.state_mutations] == [(DELETE, "name", False)]
    d = out.delayed_invocations
    assert (d[0].delay_in_ms, d[0].cancellation_token, d[0].target.id, d[0].is_cancellation_request) == (1500, "tok-1", "x", False)
    assert (d[1].delay_in_ms, d[1].cancellation_token, d[1].target.id) == (1000, "", "y")
    assert (d[2].is_cancellation_request, d[2].cancellation_token, d[2].HasField("target")) == (True, "tok-0", False)
    assert [(e.egress_namespace, e.egress_type) for e in out.outgoing_egresses] == [("a", "out")]


def test_caller_is_given_per_invocation_and_none_from_an_ingress():
    functions = StatefulFunctions()
    seen = []
    functions.register("a/f", lambda context, message: seen.append((context.caller, context.address)))
    handler = RequestReplyHandler(functions)
    handler.handle_sync(request("a/f", "me", [typed(IntType, 1)]))
    handler.handle_sync(request("a/f", "me", [typed(IntType, 1)], caller=("b", "g", "you")))
    (none_caller, address), (caller, _) = seen
    assert none_caller is None
    assert (address.namespace, address.name, address.id, address.typename) == ("a", "f", "me", "a/f")
    assert (caller.namespace, caller.name, caller.id, caller.typename) == ("b", "g", "you", "b/g")


def test_async_functions_run_in_handle_async_and_handle_sync():
    functions = StatefulFunctions()

    @functions.bind("a/f", specs=[ValueSpec("count", IntType)])
    async def f(context, message):
        await asyncio.sleep(0)
        context.storage.count = (context.storage.count or 0) + 1

    handler = RequestReplyHandler(functions)
    data = request("a/f", "1", [typed(IntType, 0)] * 3, state={"count": None})
    for out in (asyncio.run(handler.handle_async(data)), handler.handle_sync(data)):
        mutation = reply(out).invocation_result.state_mutations[0]
        assert IntType.serializer().deserialize(mutation.state_value.value) == 3


def test_a_dict_changed_in_place_is_saved_without_reassigning():
    functions = StatefulFunctions()

    @functions.bind("a/cart", specs=[ValueSpec("cart", CART), ValueSpec("untouched", CART)])
    def cart(context, message):
        basket = context.storage.cart
        basket[message.as_string()] = basket.get(message.as_string(), 0) + 1
        context.storage.untouched  # read but not changed: no mutation

    handler = RequestReplyHandler(functions)
    state = {"cart": typed(CART, {"hat": 1}), "untouched": typed(CART, {"a": [1, 2]})}
    out = reply(handler.handle_sync(request("a/cart", "1", [typed(StringType, "socks"), typed(StringType, "hat")], state=state)))
    mutations = out.invocation_result.state_mutations
    assert [m.state_name for m in mutations] == ["cart"]
    assert CART.serializer().deserialize(mutations[0].state_value.value) == {"hat": 2, "socks": 1}


def test_a_model_changed_in_place_is_saved():
    class Basket(pydantic.BaseModel):
        items: list[str] = []

    basket_type = make_json_type("com.example/Basket", Basket)
    functions = StatefulFunctions()

    @functions.bind("a/cart", specs=[ValueSpec("basket", basket_type)])
    def cart(context, message):
        if context.storage.basket is None:
            context.storage.basket = Basket()
        context.storage.basket.items.append(message.as_string())

    out = reply(RequestReplyHandler(functions).handle_sync(
        request("a/cart", "1", [typed(StringType, "a"), typed(StringType, "b")], state={"basket": None})))
    value = out.invocation_result.state_mutations[0].state_value.value
    assert basket_type.serializer().deserialize(value) == Basket(items=["a", "b"])


def test_state_is_deserialized_once_per_batch():
    calls = []

    def deserialize(data):
        calls.append(data)
        return int(data)

    from pystatefun import simple_type

    tpe = simple_type("a/num", serialize_fn=lambda v: str(v).encode(), deserialize_fn=deserialize)
    functions = StatefulFunctions()

    @functions.bind("a/f", specs=[ValueSpec("n", tpe)])
    def f(context, message):
        context.storage.n
        context.storage.n
        context.storage.n = context.storage.n + 1

    out = reply(RequestReplyHandler(functions).handle_sync(
        request("a/f", "1", [typed(IntType, 0)] * 50, state={"n": typed(tpe, 7)})))
    # once when first read, then once per assignment (reads after an assignment see the stored value, as in
    # the official SDK); never once per read, which would be 4 per invocation here
    assert calls == [str(n).encode() for n in range(7, 58)]
    assert out.invocation_result.state_mutations[0].state_value.value == b"57"


def test_a_read_after_an_assignment_sees_the_value_as_stored():
    # as in the official SDK, which reads the stored bytes again: a bool in an IntType reads as 1, bytes in
    # a StringType as str, a float as its float32, -0.0 as 0.0; an int, str or bool reads back unchanged
    class Level(enum.IntEnum):
        HIGH = 3

    specs = {"i": IntType, "l": LongType, "s": StringType, "f": FloatType, "d": DoubleType, "b": BoolType}
    assigned = [("i", True), ("i", Level.HIGH), ("i", -7), ("l", 2**40), ("s", b"caf\xc3\xa9"), ("s", "plain"),
                ("f", 0.1), ("d", -0.0), ("b", 1), ("b", False)]
    seen = []
    functions = StatefulFunctions()

    @functions.bind("a/f", specs=[ValueSpec(name, tpe) for name, tpe in specs.items()])
    def f(context, message):
        for name, value in assigned:
            setattr(context.storage, name, value)
            seen.append(getattr(context.storage, name))

    RequestReplyHandler(functions).handle_sync(request("a/f", "1", [typed(IntType, 0)], state=dict.fromkeys(specs)))
    assert [(type(v), v) for v in seen] == [
        (int, 1), (int, 3), (int, -7), (int, 2**40), (str, "café"), (str, "plain"),
        (float, struct.unpack("<f", struct.pack("<f", 0.1))[0]), (float, 0.0), (bool, True), (bool, False),
    ]
    assert math.copysign(1, seen[7]) == 1.0


def test_undeclared_state_name_says_what_to_add():
    functions = StatefulFunctions()
    functions.register("a/f", lambda context, message: context.storage.visits, [ValueSpec("seen", IntType)])
    with pytest.raises(AttributeError, match=r"'visits' is not a registered ValueSpec for the function 'a/f' \(declared: seen\); add ValueSpec\('visits'"):
        RequestReplyHandler(functions).handle_sync(request("a/f", "1", [typed(IntType, 1)], state={"seen": None}))

    def assign(context, message):
        context.storage.visits = 1

    functions.register("a/g", assign, [ValueSpec("seen", IntType)])
    with pytest.raises(AttributeError, match="'visits' is not a registered ValueSpec"):
        RequestReplyHandler(functions).handle_sync(request("a/g", "1", [typed(IntType, 1)], state={"seen": None}))


def test_wrong_value_type_for_a_spec_names_the_state_and_type():
    functions = StatefulFunctions()

    def f(context, message):
        context.storage.seen = "three"

    functions.register("a/f", f, [ValueSpec("seen", IntType)])
    with pytest.raises(TypeError, match=r"wrong value for state 'seen' of function 'a/f' \(ValueSpec type 'io.statefun.types/int'\): IntType values must be int"):
        RequestReplyHandler(functions).handle_sync(request("a/f", "1", [typed(IntType, 1)], state={"seen": None}))


def test_setting_none_says_to_use_del():
    functions = StatefulFunctions()

    def f(context, message):
        context.storage.seen = None

    functions.register("a/f", f, [ValueSpec("seen", IntType)])
    with pytest.raises(ValueError, match="del context.storage.seen"):
        RequestReplyHandler(functions).handle_sync(request("a/f", "1", [typed(IntType, 1)], state={"seen": None}))


def test_stored_value_of_another_type_is_a_type_error():
    functions = StatefulFunctions()
    functions.register("a/f", lambda context, message: context.storage.seen, [ValueSpec("seen", IntType)])
    with pytest.raises(StateTypeMismatchError, match="holds a value of type 'io.statefun.types/string'"):
        RequestReplyHandler(functions).handle_sync(
            request("a/f", "1", [typed(IntType, 1)], state={"seen": typed(StringType, "x")}))


def test_context_rejects_wrong_arguments_with_what_to_do():
    functions = StatefulFunctions()
    errors = []

    def f(context, message):
        for call in (
            lambda: context.send("not a message"),
            lambda: context.send_after(5, message),
            lambda: context.send_after(timedelta(seconds=-1), message),
            lambda: context.cancel_delayed_message(""),
            lambda: context.send_egress(message),
        ):
            try:
                call()
            except (TypeError, ValueError) as e:
                errors.append(str(e))

    functions.register("a/f", f)
    RequestReplyHandler(functions).handle_sync(request("a/f", "1", [typed(IntType, 1)]))
    assert len(errors) == 5
    assert "message_builder" in errors[0] and "timedelta" in errors[1] and "zero or more" in errors[2]
    assert "non-empty token" in errors[3] and "egress_message_builder" in errors[4]


def test_malformed_requests():
    handler = RequestReplyHandler(counter_functions())
    with pytest.raises(MalformedRequestError, match="not a StateFun ToFunction"):
        handler.handle_sync(b"\xff\xff\xff")
    with pytest.raises(MalformedRequestError, match="no invocation batch"):
        handler.handle_sync(b"")
    # a batch without invocations is answered as the official SDK answers it: nothing to do
    assert handler.handle_sync(request("com.example/counter", "1", [], state={"count": None})) == b""
    with pytest.raises(KeyError, match="no function is registered for type 'com.example/nope'"):
        handler.handle_sync(request("com.example/nope", "1", [typed(IntType, 1)]))


def test_a_raising_function_has_no_effects():
    functions = StatefulFunctions()

    def f(context, message):
        context.send(message_builder("a/g", "1", int_value=1))
        raise RuntimeError("boom")

    functions.register("a/f", f)
    with pytest.raises(RuntimeError, match="boom"):
        RequestReplyHandler(functions).handle_sync(request("a/f", "1", [typed(IntType, 1)]))
