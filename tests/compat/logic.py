"""Function logic shared by the differential tests: one module, run unchanged by both SDKs.

``build_functions(sdk)`` registers the same functions on ``sdk``, which is either the module
``pystatefun`` (in the test process) or the official ``statefun`` (in official_worker.py, in the
official SDK's virtualenv, with protobuf 3.20). Only names public in both SDKs are used.

Every function is a small script interpreter. An invocation whose argument has the typename
``compat/script`` carries a JSON list of commands (see ``Invocation.execute``); any other argument is
inspected: decoded with every type both SDKs know, the findings sent to an egress, and built-in values
echoed back. What an invocation reads is sent to an egress at its end, so reads show in the reply.

The logic is written in the official SDK's style: a state read gives a fresh value that is changed and
then assigned back; nothing relies on a value read from storage being saved when changed in place.
(``set_then_change`` and ``try_set`` exist only for the targeted scenarios of test_differential.py.)

Value specs (``valspec``) in commands are JSON lists ``[kind, ...]``:

* ``["bool"|"int"|"long"|"float"|"double"|"string", value]``: any JSON value for that built-in type
  (an int for a FloatType is fine, a string for an IntType is an error);
* ``["bytes_str", hex]``, ``["bytearray_str", hex]``: UTF-8 bytes (bytearray) for a StringType;
* ``["json", document]``; ``["json_tuple", list]`` and ``["json_intkeys", [[int, value], ...]]``: JSON
  values a round trip changes (to a list, to str keys); ``["json_set", list]``: a set, not JSON at all;
* ``["ts", seconds, nanos]``, ``["dur", seconds, nanos]``, ``["sv", text]``: protobuf messages.
"""

from __future__ import annotations

import asyncio
import json
import struct
from datetime import timedelta

from google.protobuf import duration_pb2, timestamp_pb2, wrappers_pb2

SCRIPT_TYPENAME = "compat/script"
JSON_TYPENAME = "compat/json"
DURATION_NAMESPACE = "compat.pb"  # make_protobuf_type with an explicit namespace

SYNC_FN = "compat.fn/sync"
ASYNC_FN = "compat.fn/async"
TTL_FN = "compat.fn/ttl"
STATELESS_FN = "compat.fn/stateless"

OBSERVATIONS_EGRESS = "compat.egress/observations"  # what an invocation read, sent at its end
INSPECT_EGRESS = "compat.egress/inspect"  # what a non-script argument decoded to
ECHO_TARGET = "compat.sink/echo"  # built-in values of non-script arguments are echoed here
NO_CALLER_TARGET = "compat.sink/no-caller"  # where "reply" goes when there is no caller

# The state of each function: (name, type key, expire_after_call, expire_after_write); the
# expirations are timedelta keyword arguments (or None). Declaration order matters: missing specs
# are reported in this order.
FUNCTION_SPECS: dict[str, list[tuple[str, str, dict | None, dict | None]]] = {
    SYNC_FN: [
        ("b", "bool", None, None),
        ("i", "int", None, None),
        ("l", "long", None, None),
        ("f", "float", None, None),
        ("d", "double", None, None),
        ("s", "string", None, None),
        ("j", "json", None, None),
        ("p", "ts", None, None),
    ],
    ASYNC_FN: [
        ("s", "string", None, None),
        ("counter", "int", None, None),
        ("dur", "dur", None, None),
        ("sv", "sv", None, None),
        ("flag", "bool", None, None),
        ("d", "double", None, None),
        ("f", "float", None, None),
        ("big", "long", None, None),
        ("doc", "json", None, None),
    ],
    TTL_FN: [
        ("seen", "int", {"seconds": 1}, None),
        ("name", "string", None, {"days": 1}),
        ("plain", "long", None, None),
        ("tiny", "float", {"microseconds": 1500}, None),  # 1 ms
        ("sub_ms", "json", None, {"microseconds": 500}),  # set, but 0 ms
        ("zero", "double", {"seconds": 0}, None),  # a zero timedelta is falsy: no expiration
        ("huge", "ts", None, {"days": 36500, "milliseconds": 7}),
        ("_under", "bool", {"hours": 3, "minutes": 2}, None),
    ],
    STATELESS_FN: [],
}

# Functions whose Python code is a coroutine function.
ASYNC_FUNCTIONS = frozenset({ASYNC_FN})

# Typenames every Type key maps to, independent of either SDK (the tests check these).
TYPE_TYPENAMES = {
    "bool": "io.statefun.types/bool",
    "int": "io.statefun.types/int",
    "long": "io.statefun.types/long",
    "float": "io.statefun.types/float",
    "double": "io.statefun.types/double",
    "string": "io.statefun.types/string",
    "json": JSON_TYPENAME,
    "ts": "type.googleapis.com/google.protobuf.Timestamp",
    "dur": f"{DURATION_NAMESPACE}/google.protobuf.Duration",
    "sv": "type.googleapis.com/google.protobuf.StringValue",
}

BUILTIN_KEYS = ("bool", "int", "long", "float", "double", "string")
KEYWORD_OF = {
    "bool": "bool_value",
    "int": "int_value",
    "long": "long_value",
    "float": "float_value",
    "double": "double_value",
    "string": "str_value",
}


class Types:
    """The Type objects of one SDK, by type key."""

    def __init__(self, sdk):
        self.sdk = sdk
        self.by_key = {
            "bool": sdk.BoolType,
            "int": sdk.IntType,
            "long": sdk.LongType,
            "float": sdk.FloatType,
            "double": sdk.DoubleType,
            "string": sdk.StringType,
            "json": sdk.make_json_type(JSON_TYPENAME),
            "ts": sdk.make_protobuf_type(timestamp_pb2.Timestamp),
            "dur": sdk.make_protobuf_type(duration_pb2.Duration, namespace=DURATION_NAMESPACE),
            "sv": sdk.make_protobuf_type(wrappers_pb2.StringValue),
        }
        self.script = sdk.make_json_type(SCRIPT_TYPENAME)
        self.json = self.by_key["json"]


# ---------------------------------------------------------------------------------------------------
# Values


def make_value(valspec):
    """The Python value a valspec stands for, and the key of the type it is meant for."""
    kind = valspec[0]
    if kind in BUILTIN_KEYS or kind == "json":
        return valspec[1], kind
    if kind == "bytes_str":
        return bytes.fromhex(valspec[1]), "string"
    if kind == "bytearray_str":
        return bytearray.fromhex(valspec[1]), "string"
    if kind == "json_tuple":
        return tuple(valspec[1]), "json"
    if kind == "json_intkeys":
        return {int(k): v for k, v in valspec[1]}, "json"
    if kind == "json_set":  # not JSON-serializable: assigning it is an error
        return set(valspec[1]), "json"
    if kind == "ts":
        return timestamp_pb2.Timestamp(seconds=valspec[1], nanos=valspec[2]), "ts"
    if kind == "dur":
        return duration_pb2.Duration(seconds=valspec[1], nanos=valspec[2]), "dur"
    if kind == "sv":
        return wrappers_pb2.StringValue(value=valspec[1]), "sv"
    raise ValueError(f"unknown valspec {valspec!r}")


def describe(value):
    """A JSON-able description of a value that tells apart everything the tests care about.

    Python types are kept (bool/int/float/str/bytes/list/tuple/dict), floats by their IEEE bits (so
    -0.0 and NaN signs count), protobuf messages by their type and deterministic serialization.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", value]
    if isinstance(value, float):
        return ["float", struct.pack("<d", value).hex()]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, (bytes, bytearray)):
        return [type(value).__name__, bytes(value).hex()]
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [describe(v) for v in value]]
    if isinstance(value, dict):
        return ["dict", [[describe(k), describe(v)] for k, v in value.items()]]
    descriptor = getattr(value, "DESCRIPTOR", None)
    if descriptor is not None:
        return ["pb", descriptor.full_name, value.SerializeToString(deterministic=True).hex()]
    return ["other", type(value).__name__, repr(value)]


def describe_address(address):
    if address is None:
        return None
    return [address.namespace, address.name, address.id, address.typename]


def update(key: str, value):
    """The next value of a state of type ``key`` after ``value`` (None when absent)."""
    if key == "bool":
        return not value
    if key == "int":
        return (value or 0) + 1
    if key == "long":
        return (value or 0) + 2**40 + 1  # out of range (an error) only near the maximum
    if key == "float":
        return (value or 0.0) * 1.5 + 0.25
    if key == "double":
        return (value or 0.0) / 3.0 + 1.0
    if key == "string":
        return (value or "") + "ß"
    if key == "json":
        if value is None:
            return {"n": 1}
        if isinstance(value, dict):
            value["n"] = value.get("n", 0) + 1 if isinstance(value.get("n", 0), int) else 0
            value.setdefault("log", [])
            if isinstance(value["log"], list):
                value["log"].append(len(value))
            return value
        if isinstance(value, list):
            value.append(len(value))
            return value
        return {"prev": value}
    if key == "ts":
        ts = timestamp_pb2.Timestamp()
        if value is not None:
            ts.CopyFrom(value)
        ts.seconds += 1
        ts.nanos = (ts.nanos + 7) % 1_000_000_000
        return ts
    if key == "dur":
        d = duration_pb2.Duration()
        if value is not None:
            d.CopyFrom(value)
        d.seconds -= 1
        return d
    if key == "sv":
        return wrappers_pb2.StringValue(value=(value.value if value is not None else "") + "x")
    raise ValueError(key)


def change_in_place(value):
    """Changes a mutable value (a JSON document or a protobuf message) without making a new one."""
    if isinstance(value, dict):
        value["changed"] = True
    elif isinstance(value, list):
        value.append("changed")
    elif isinstance(value, timestamp_pb2.Timestamp) or isinstance(value, duration_pb2.Duration):
        value.seconds += 1
    elif isinstance(value, wrappers_pb2.StringValue):
        value.value += "!"


def kafka_value(types: Types, spec):
    """The value and value_type arguments of a Kafka/Kinesis record: [kind, data] or ["typed", valspec]."""
    kind = spec[0]
    if kind == "typed":
        value, key = make_value(spec[1])
        return value, types.by_key[key]
    if kind == "str":
        return spec[1], None
    if kind == "bytes":
        return bytes.fromhex(spec[1]), None
    if kind == "bytearray":
        return bytearray.fromhex(spec[1]), None
    if kind in ("int", "float", "bool"):
        return spec[1], None
    raise ValueError(f"unknown record value {spec!r}")


# ---------------------------------------------------------------------------------------------------
# The interpreter


class Invocation:
    """One invocation being interpreted: the SDK, the context, the message and what was read."""

    def __init__(self, types: Types, state_types: dict[str, str], context, message):
        self.types = types
        self.sdk = types.sdk
        self.state_types = state_types
        self.context = context
        self.message = message
        self.observations = []

    def storage_get(self, name):
        return getattr(self.context.storage, name)

    def execute(self, cmd):
        """Runs one command. Returns True if the command asked an async function to yield.

        * ``["get", state]``: read the state (observed)
        * ``["set", state, valspec]``, ``["try_set", state, valspec]`` (an error is observed, not raised),
          ``["set_then_change", state, valspec]`` (the assigned object is changed afterwards)
        * ``["update", state]``: read, compute the next value (``update``), assign
        * ``["del", state]``
        * ``["send", target, id, "kw"|"typed", valspec]``: message_builder with ``<type>_value=`` or with
          ``value=, value_type=``; ``["send_kw", target, id, {keyword: valspec}]``: any keywords;
          ``["send_state", target, id, state]``: send the state's value
        * ``["send_after", timedelta kwargs, target, id, mode, valspec, token]``: the token is null (not
          passed), ``["kw", token]`` or ``["pos", token]``
        * ``["cancel", token]``
        * ``["egress", typename, valspec]``, ``["egress_state", typename, state]``
        * ``["kafka", typename, topic, record value, key or null]``,
          ``["kinesis", typename, stream, record value, partition key, explicit hash key or null]``, where a
          record value is ``[str|bytes|bytearray|int|float|bool, data]`` or ``["typed", valspec]``
        * ``["reply"]``: send the address and the caller to the caller (or, without one, to a sink)
        * ``["whoami"]``: send the address and the caller to this address
        * ``["raise", text]``; ``["await"]``: ``asyncio.sleep(0)`` in the async function
        """
        sdk, ctx, types = self.sdk, self.context, self.types
        op = cmd[0]
        if op == "get":
            self.observations.append(["get", cmd[1], describe(self.storage_get(cmd[1]))])
        elif op == "set":
            value, _ = make_value(cmd[2])
            setattr(ctx.storage, cmd[1], value)
        elif op == "try_set":
            value, _ = make_value(cmd[2])
            try:
                setattr(ctx.storage, cmd[1], value)
            except Exception as e:
                self.observations.append(["set failed", cmd[1], type(e).__name__])
        elif op == "set_then_change":  # the assigned object is changed afterwards, not assigned again
            value, _ = make_value(cmd[2])
            setattr(ctx.storage, cmd[1], value)
            change_in_place(value)
        elif op == "update":
            name = cmd[1]
            setattr(ctx.storage, name, update(self.state_types[name], self.storage_get(name)))
        elif op == "del":
            delattr(ctx.storage, cmd[1])
        elif op == "send":
            ctx.send(self.build_message(cmd[1], cmd[2], cmd[3], cmd[4]))
        elif op == "send_kw":  # message_builder with the keyword arguments given
            kwargs = {}
            for keyword, spec in cmd[3].items():
                kwargs[keyword] = types.by_key[spec] if keyword == "value_type" else make_value(spec)[0]
            ctx.send(sdk.message_builder(cmd[1], cmd[2], **kwargs))
        elif op == "send_state":
            name = cmd[3]
            value = self.storage_get(name)
            if value is None:
                ctx.send(sdk.message_builder(cmd[1], cmd[2], str_value=f"<no {name}>"))
            else:
                tpe = types.by_key[self.state_types[name]]
                ctx.send(sdk.message_builder(cmd[1], cmd[2], value=value, value_type=tpe))
        elif op == "send_after":
            delay = timedelta(**cmd[1])
            message = self.build_message(cmd[2], cmd[3], cmd[4], cmd[5])
            token = cmd[6]
            if token is None:
                ctx.send_after(delay, message)
            elif token[0] == "kw":
                ctx.send_after(delay, message, cancellation_token=token[1])
            else:
                ctx.send_after(delay, message, token[1])
        elif op == "cancel":
            ctx.cancel_delayed_message(cmd[1])
        elif op == "egress":
            value, key = make_value(cmd[2])
            ctx.send_egress(sdk.egress_message_builder(cmd[1], value, types.by_key[key]))
        elif op == "egress_state":
            name = cmd[2]
            value = self.storage_get(name)
            if value is not None:
                tpe = types.by_key[self.state_types[name]]
                ctx.send_egress(sdk.egress_message_builder(cmd[1], value, tpe))
        elif op == "kafka":
            _, typename, topic, spec, key = cmd
            value, value_type = kafka_value(types, spec)
            kwargs = {}
            if value_type is not None:
                kwargs["value_type"] = value_type
            if key is not None:
                kwargs["key"] = key
            ctx.send_egress(sdk.kafka_egress_message(typename, topic, value, **kwargs))
        elif op == "kinesis":
            _, typename, stream, spec, partition_key, hash_key = cmd
            value, value_type = kafka_value(types, spec)
            kwargs = {}
            if value_type is not None:
                kwargs["value_type"] = value_type
            if hash_key is not None:
                kwargs["explicit_hash_key"] = hash_key
            ctx.send_egress(sdk.kinesis_egress_message(typename, stream, value, partition_key, **kwargs))
        elif op == "reply":
            caller = ctx.caller
            info = {"address": describe_address(ctx.address), "caller": describe_address(caller)}
            if caller is not None:
                target, id = caller.typename, caller.id
            else:
                target, id = NO_CALLER_TARGET, ctx.address.id
            ctx.send(sdk.message_builder(target, id, value=info, value_type=types.json))
        elif op == "whoami":
            address = ctx.address
            ctx.send(sdk.message_builder(address.typename, address.id, str_value=json.dumps(
                [describe_address(address), describe_address(ctx.caller)], ensure_ascii=False)))
        elif op == "raise":
            raise RuntimeError(cmd[1])
        elif op == "await":
            return True
        else:
            raise ValueError(f"unknown command {cmd!r}")
        return False

    def build_message(self, target, id, mode, valspec):
        value, key = make_value(valspec)
        if mode == "kw":
            return self.sdk.message_builder(target, id, **{KEYWORD_OF[key]: value})
        return self.sdk.message_builder(target, id, value=value, value_type=self.types.by_key[key])

    def finish(self):
        if self.observations:
            self.context.send_egress(
                self.sdk.egress_message_builder(OBSERVATIONS_EGRESS, self.observations, self.types.json)
            )

    def inspect(self):
        """For a non-script argument: decode it every way, report that, echo built-in values."""
        sdk, ctx, message, types = self.sdk, self.context, self.message, self.types
        raw = message.raw_value()
        checks = [
            message.is_bool(), message.is_int(), message.is_long(), message.is_float(),
            message.is_double(), message.is_string(),
        ] + [message.is_type(types.by_key[k]) for k in sorted(types.by_key)]
        decoded = {}
        # JSON text is decoded as JSON only: read as protobuf it is mostly garbage, on which the two protobuf
        # runtimes disagree (test_type_encodings.py pins that down with a minimal case).
        keys = ["json"] if message.is_type(types.json) else sorted(types.by_key)
        getters = {
            "bool": message.as_bool, "int": message.as_int, "long": message.as_long,
            "float": message.as_float, "double": message.as_double, "string": message.as_string,
        }
        for key in keys:
            try:
                if key in getters:
                    value = getters[key]()
                else:
                    value = message.as_type(types.by_key[key])
                decoded[key] = describe(value)
            except Exception as e:  # decoding garbage: both SDKs must fail the same way
                decoded[key] = ["error", type(e).__name__]
        record = {
            "typename": message.value_typename(),
            "raw": None if raw is None else raw.hex(),
            "is": checks,
            "as": decoded,
            "caller": describe_address(ctx.caller),
        }
        ctx.send_egress(sdk.egress_message_builder(INSPECT_EGRESS, record, types.json))
        for key in BUILTIN_KEYS:
            if message.is_type(types.by_key[key]) and decoded.get(key) is not None and decoded[key][0] != "error":
                value = getters[key]()
                ctx.send(sdk.message_builder(ECHO_TARGET, ctx.address.id, **{KEYWORD_OF[key]: value}))


def build_functions(sdk):
    """Registers the compat functions on ``sdk`` (``pystatefun`` or ``statefun``)."""
    types = Types(sdk)
    functions = sdk.StatefulFunctions()
    for typename, specs in FUNCTION_SPECS.items():
        value_specs = []
        for name, key, after_call, after_write in specs:
            kwargs = {}
            if after_call is not None:
                kwargs["expire_after_call"] = timedelta(**after_call)
            if after_write is not None:
                kwargs["expire_after_write"] = timedelta(**after_write)
            value_specs.append(sdk.ValueSpec(name=name, type=types.by_key[key], **kwargs))
        state_types = {name: key for name, key, _, _ in specs}
        if typename in ASYNC_FUNCTIONS:
            fun = _async_function(types, state_types)
        else:
            fun = _sync_function(types, state_types)
        functions.register(typename, fun, value_specs)
    return functions


def _sync_function(types: Types, state_types: dict[str, str]):
    def fun(context, message):
        inv = Invocation(types, state_types, context, message)
        if not message.is_type(types.script):
            inv.inspect()
            return
        for cmd in message.as_type(types.script):
            inv.execute(cmd)
        inv.finish()

    return fun


def _async_function(types: Types, state_types: dict[str, str]):
    async def fun(context, message):
        inv = Invocation(types, state_types, context, message)
        if not message.is_type(types.script):
            await asyncio.sleep(0)
            inv.inspect()
            return
        for cmd in message.as_type(types.script):
            if inv.execute(cmd):
                await asyncio.sleep(0)
        inv.finish()

    return fun
