"""Differential tests: our RequestReplyHandler against the official SDK's, on the same request bytes.

A seeded generator makes ToFunction batches (1 to 200 invocations) for the functions of logic.py, with
states present with a value, present without one, or absent (IncompleteInvocationContext), callers
present or not, and scripts using every command logic.py knows. Each request goes to
``pystatefun.RequestReplyHandler.handle_sync`` here and to ``statefun.RequestReplyHandler.handle_async``
in the official worker. Both replies must be equal FromFunction messages with equal bytes, or both
handlers must raise, ours an exception of (a subclass of) the class the official one raised.

Seeds: PYSTATEFUN_COMPAT_SEEDS selects others, e.g. ``PYSTATEFUN_COMPAT_SEEDS=17`` or ``=0-2999``.

A failure names its seeds, shrinks the first failing batch to its shortest failing prefix, and shows
that prefix's state, last invocations and the diff of the two replies (as text_format).

The second half of the file holds targeted cases: fixed scenarios both SDKs agree on, one minimal
scenario per behaviour difference found while writing these tests (``test_known_difference``: each
explanation says what the official SDK does and what pystatefun did before it was fixed; they now
guard against regressions), the differences kept on purpose (``test_deliberate_difference``), and
malformed requests.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import math
import os
import random
import struct
from dataclasses import dataclass, field

import pytest
from google.protobuf import text_format

import pystatefun
from pystatefun.wire import types_pb2
from pystatefun.wire.request_reply_pb2 import Address, FromFunction, ToFunction, TypedValue

from . import logic
from .conftest import OfficialError

# ---------------------------------------------------------------------------------------------------
# Seeds

SEEDS_ENV = "PYSTATEFUN_COMPAT_SEEDS"
DEFAULT_SEEDS = range(0, 1000)
GROUP_SIZE = 10


def _selected_seeds() -> list[int]:
    text = os.environ.get(SEEDS_ENV, "").strip()
    if not text:
        return list(DEFAULT_SEEDS)
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            seeds.extend(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    return seeds


def _seed_groups() -> list[list[int]]:
    seeds = _selected_seeds()
    return [seeds[i : i + GROUP_SIZE] for i in range(0, len(seeds), GROUP_SIZE)]


# ---------------------------------------------------------------------------------------------------
# The generator

TYPE_KEYS = ("bool", "int", "long", "float", "double", "string", "json", "ts", "dur", "sv")
PROTOBUF_KEYS = tuple(k for k in TYPE_KEYS if k != "json")  # types whose values are protobuf messages
WRAPPERS = {
    "bool": types_pb2.BooleanWrapper,
    "int": types_pb2.IntWrapper,
    "long": types_pb2.LongWrapper,
    "float": types_pb2.FloatWrapper,
    "double": types_pb2.DoubleWrapper,
    "string": types_pb2.StringWrapper,
}
ZERO_WRITTEN_OUT = {  # field 1 present with the zero value, which proto3 encoders leave out
    "bool": b"\x08\x00",
    "int": b"\x0d" + b"\0" * 4,
    "long": b"\x09" + b"\0" * 8,
    "float": b"\x0d" + b"\0" * 4,
    "double": b"\x09" + b"\0" * 8,
    "string": b"\x0a\x00",
}

TARGETS = [logic.SYNC_FN, logic.ASYNC_FN, "a/b/c", "ns.ü/typé", "x/y", logic.TTL_FN]
IDS = ["1", "ü-ñ", "id with spaces", "x" * 150, "0", "🙂"]
EGRESSES = ["compat.egress/generic", "io.ns.kafka/out", "k/i/n", "é/ö"]
TOKENS = ["tok", "tok-2", "ü", "x" * 140, "a b"]
STRINGS = ["a", "héllo ☃", "𝄞 music", "x" * 200, "ü" * 70, "new\nline", "\x00nul", "日本語テキスト"]
FLOAT_SPECIALS = [0.0, -0.0, 0.1, -2.5, 1.0, 1e38, 3.4028234663852886e38, -3.4028234663852886e38,
                  1.401298464324817e-45, math.inf, -math.inf, math.nan, 16777217.0, 0.5, 100.0,
                  1e-50, -1e-50, 3.4028235e38, -3.4028235e38, 1e39]
DOUBLE_SPECIALS = [0.0, -0.0, 0.1, -2.5, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324,
                   2.2250738585072014e-308, math.inf, -math.inf, math.nan, 1e300, 1 / 3]
INT_SPECIALS = [0, 1, -1, 2**31 - 1, -(2**31), 255, 256, -129, 65536]
LONG_SPECIALS = [0, 1, -1, 2**63 - 1, -(2**63), 2**31, -(2**31) - 1, 2**53 + 1]


class Gen:
    """Random requests for one seed."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def pick(self, weighted: dict):
        keys = list(weighted)
        return self.rng.choices(keys, weights=[weighted[k] for k in keys])[0]

    # values -------------------------------------------------------------------------------------

    def string(self) -> str:
        rng = self.rng
        if rng.random() < 0.5:
            return rng.choice(STRINGS)
        alphabet = "abcXYZ019 _-/éßüñ☃€中文🙂𝄞\t"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))

    def json_doc(self, depth: int = 0):
        rng = self.rng
        r = rng.random()
        if depth > 2 or r < 0.35:
            return rng.choice([None, True, False, 0, -7, 2**40, 0.1, -0.0, 1e300, self.string()])
        if r < 0.7:
            return {self.string(): self.json_doc(depth + 1) for _ in range(rng.randrange(0, 4))}
        return [self.json_doc(depth + 1) for _ in range(rng.randrange(0, 4))]

    def value(self, key: str):
        """A valid Python value (in JSON) of type key."""
        rng = self.rng
        if key == "bool":
            return rng.random() < 0.5
        if key == "int":
            return rng.choice(INT_SPECIALS) if rng.random() < 0.5 else rng.randrange(-(2**31), 2**31)
        if key == "long":
            return rng.choice(LONG_SPECIALS) if rng.random() < 0.5 else rng.randrange(-(2**63), 2**63)
        if key == "float":
            r = rng.random()
            if r < 0.5:
                return rng.choice(FLOAT_SPECIALS)
            if r < 0.8:  # exactly representable in 32 bits
                return struct.unpack("<f", struct.pack("<f", rng.uniform(-1e6, 1e6)))[0]
            return rng.uniform(-1e6, 1e6)
        if key == "double":
            return rng.choice(DOUBLE_SPECIALS) if rng.random() < 0.5 else rng.uniform(-1e12, 1e12)
        if key == "string":
            return "" if rng.random() < 0.1 else self.string()
        if key == "json":
            doc = self.json_doc()
            while doc is None and rng.random() < 0.9:  # None is not a value: assigning it is an error
                doc = self.json_doc()
            return doc
        raise ValueError(key)

    def valspec(self, key: str) -> list:
        rng = self.rng
        if key in ("ts", "dur"):
            seconds = rng.choice([0, 1, -1, 1_700_000_000, rng.randrange(-(2**40), 2**40)])
            nanos = rng.choice([0, 1, 999_999_999, rng.randrange(0, 10**9)])
            return [key, seconds, nanos]
        if key == "sv":
            return ["sv", "" if rng.random() < 0.2 else self.string()]
        r = rng.random()
        if r < 0.04:  # valid values of another Python type, that a round trip changes
            if key == "string":
                return ["bytes_str", self.string().encode("utf-8").hex()]
            if key in ("float", "double"):
                return [key, rng.choice([0, 1, -3, 2**24 + 1, 2**60, rng.randrange(-(10**6), 10**6)])]
            if key == "bool":
                return ["bool", rng.choice([0, 1, 7, -1])]
            if key in ("int", "long"):
                return [key, rng.random() < 0.5]
            if key == "json":
                doc = [self.json_doc() for _ in range(rng.randrange(0, 3))]
                if rng.random() < 0.5:
                    return ["json_tuple", doc]
                return ["json_intkeys", [[rng.randrange(-5, 5), d] for d in doc]]
        return [key, self.value(key)]

    def encoded(self, key: str) -> bytes:
        """Bytes of a value of type key: usually canonical, sometimes not (still valid protobuf)."""
        rng = self.rng
        if key in WRAPPERS:
            data = WRAPPERS[key](value=self.value(key)).SerializeToString()
            r = rng.random()
            if r < 0.08:  # the field twice: the last one wins
                other = WRAPPERS[key](value=self.value(key)).SerializeToString()
                data = other + data
            elif r < 0.12:  # an unknown field
                data = data + b"\x10\x01" if rng.random() < 0.5 else b"\x1a\x02hi" + data
            elif r < 0.15 and not data:
                data = ZERO_WRITTEN_OUT[key]
            return data
        if key == "json":
            return json.dumps(self.json_doc(), ensure_ascii=rng.random() < 0.5).encode("utf-8")
        return make_python(self.valspec(key)).SerializeToString()

    # commands -------------------------------------------------------------------------------------

    def delay(self) -> dict:
        rng = self.rng
        return rng.choice([
            {"milliseconds": rng.randrange(0, 100_000)},
            {"seconds": round(rng.uniform(0, 100), 6)},
            {"microseconds": rng.choice([0, 1, 999, 1000, 1500, 123456789])},
            {"days": rng.randrange(0, 400), "hours": rng.randrange(0, 24)},
            {"milliseconds": 0},
        ])

    def message_args(self) -> list:
        """target, id, mode, valspec of a message."""
        rng = self.rng
        key = rng.choice(TYPE_KEYS)
        mode = "kw" if key in logic.BUILTIN_KEYS and rng.random() < 0.6 else "typed"
        return [rng.choice(TARGETS), rng.choice(IDS), mode, self.valspec(key)]

    def record_value(self, numbers: bool) -> list:
        rng = self.rng
        kinds = ["str", "bytes", "bytearray", "typed"] + (["int", "float", "bool"] if numbers else [])
        kind = rng.choice(kinds)
        if kind == "str":
            return ["str", self.string()]
        if kind in ("bytes", "bytearray"):
            return [kind, rng.randbytes(rng.randrange(0, 40)).hex()]
        if kind == "int":
            return ["int", rng.choice([0, 1, -1, 2**31 - 1, -(2**31), rng.randrange(-(2**31), 2**31)])]
        if kind == "float":
            return ["float", rng.choice(DOUBLE_SPECIALS + [rng.uniform(-1e9, 1e9)])]
        if kind == "bool":
            return ["bool", rng.random() < 0.5]
        return ["typed", self.valspec(rng.choice(TYPE_KEYS))]

    def command(self, states: list[tuple[str, str]]) -> list:
        rng = self.rng
        weights = {
            "get": 14, "set": 12, "update": 12, "del": 5, "send": 10, "send_state": 5, "send_after": 7,
            "cancel": 3, "egress": 5, "egress_state": 3, "kafka": 5, "kinesis": 4, "reply": 4, "whoami": 2,
            "await": 2,
        }
        if not states:
            for op in ("get", "set", "update", "del", "send_state", "egress_state"):
                del weights[op]
        op = self.pick(weights)
        if op in ("get", "update", "del"):
            return [op, rng.choice(states)[0]]
        if op == "set":
            name, key = rng.choice(states)
            return ["set", name, self.valspec(key)]
        if op == "send":
            return ["send"] + self.message_args()
        if op == "send_state":
            return ["send_state", rng.choice(TARGETS), rng.choice(IDS), rng.choice(states)[0]]
        if op == "send_after":
            token = rng.choice(
                [None, None, ["kw", ""], ["kw", None], ["kw", rng.choice(TOKENS)], ["pos", rng.choice(TOKENS)]]
            )
            return ["send_after", self.delay()] + self.message_args() + [token]
        if op == "cancel":
            return ["cancel", rng.choice(TOKENS)]
        if op == "egress":
            return ["egress", rng.choice(EGRESSES), self.valspec(rng.choice(TYPE_KEYS))]
        if op == "egress_state":
            return ["egress_state", rng.choice(EGRESSES), rng.choice(states)[0]]
        if op == "kafka":
            key = rng.choice([None, "", "key-ü", self.string()])
            topic = rng.choice(["topic", "t-ü", "x" * 130])
            return ["kafka", rng.choice(EGRESSES), topic, self.record_value(True), key]
        if op == "kinesis":
            hash_key = rng.choice([None, "", "12345678901234567890", self.string()])
            return ["kinesis", rng.choice(EGRESSES), rng.choice(["stream", "s-ü"]), self.record_value(False),
                    rng.choice(["pk", "", "pk-ü"]), hash_key]
        return [op]

    def error_command(self, states: list[tuple[str, str]]) -> list:
        """A command that makes both handlers raise."""
        rng = self.rng
        int_states = [name for name, key in states if key == "int"]
        choices = [
            ["raise", "boom ü"],
            ["send", "x/y", "1", "kw", ["int", 2**31]],  # out of range for IntType
            ["send", "x/y", "1", "typed", ["long", -(2**63) - 1]],
            ["send", "x/y", "1", "kw", ["int", "not an int"]],
            ["send", "no-slash", "1", "kw", ["int", 1]],  # an invalid target typename
            ["send", "x/y", "", "kw", ["int", 1]],  # an empty id
            ["kafka", "k/k", "topic", ["int", 2**31], None],  # Kafka's IntegerSerializer range
            ["kafka", "k/k", "", ["str", "v"], None],  # no topic
            ["kinesis", "k/k", "stream", ["int", 1], "pk", None],  # Kinesis takes str or bytes only
            ["egress", "no-slash", ["int", 1]],
            ["get", "undeclared"],
            ["set", "undeclared", ["int", 1]],
            ["unknown-command"],
        ]
        if int_states:
            choices.append(["set", rng.choice(int_states), ["int", 2**31]])
            choices.append(["set", rng.choice(int_states), ["string", "x"]])
        return rng.choice(choices)

    def script(self, states: list[tuple[str, str]]) -> list:
        n = self.rng.choice([0, 1, 1, 2, 2, 3, 4, 6])
        return [self.command(states) for _ in range(n)]

    def address(self) -> Address:
        rng = self.rng
        typename = rng.choice(TARGETS)
        namespace, _, name = typename.rpartition("/")
        return Address(namespace=namespace, type=name, id=rng.choice(IDS))

    def argument(self) -> TypedValue:
        rng = self.rng
        r = rng.random()
        if r < 0.55:
            key = rng.choice(TYPE_KEYS)
            return TypedValue(typename=logic.TYPE_TYPENAMES[key], has_value=True, value=self.encoded(key))
        if r < 0.65:  # bytes of one type under the typename of another (JSON text only under JSON)
            key, other = rng.choice(PROTOBUF_KEYS), rng.choice(TYPE_KEYS)
            return TypedValue(typename=logic.TYPE_TYPENAMES[other], has_value=True, value=self.encoded(key))
        if r < 0.75:
            return TypedValue(typename=logic.TYPE_TYPENAMES[rng.choice(TYPE_KEYS)], has_value=False)
        if r < 0.85:  # a type neither side knows
            return TypedValue(typename="compat/unknown", has_value=rng.random() < 0.8,
                              value=self.encoded(rng.choice(PROTOBUF_KEYS)))
        if r < 0.92:  # a zero-length value
            return TypedValue(typename=logic.TYPE_TYPENAMES[rng.choice(TYPE_KEYS)], has_value=True)
        return TypedValue()  # nothing at all

    def state_value(self, key: str, typename: str | None = None) -> TypedValue:
        return TypedValue(typename=typename or logic.TYPE_TYPENAMES[key], has_value=True, value=self.encoded(key))

    def batch(self) -> "Batch":
        rng = self.rng
        target = rng.choice(list(logic.FUNCTION_SPECS))
        request = ToFunction()
        batch = request.invocation
        batch.target.namespace, _, batch.target.type = target.rpartition("/")
        batch.target.id = rng.choice(IDS)
        specs = [(name, key) for name, key, _, _ in logic.FUNCTION_SPECS[target]]

        incomplete = specs and rng.random() < 0.12
        absent = {name for name, _ in specs if incomplete and rng.random() < 0.5}
        if incomplete and not absent:
            absent.add(rng.choice(specs)[0])
        states = []
        for name, key in specs:
            if name in absent:
                continue
            r = rng.random()
            if r < 0.6:
                states.append((name, self.state_value(key)))
            elif r < 0.94:
                states.append((name, None))  # registered, no value: no state_value at all
            elif r < 0.992:
                states.append((name, TypedValue(typename=logic.TYPE_TYPENAMES[key], has_value=False)))
            else:  # a value of another type: reading it is an error
                other = rng.choice([k for k in TYPE_KEYS if logic.TYPE_TYPENAMES[k] != logic.TYPE_TYPENAMES[key]])
                states.append((name, self.state_value(other)))
        if rng.random() < 0.15:
            states.append(("zz_undeclared", self.state_value("int")))
        if states and rng.random() < 0.05:  # a name twice: the last one counts
            name, _ = rng.choice(states)
            key = dict(specs).get(name, "int")
            states.append((name, self.state_value(key)))
        if rng.random() < 0.5:
            rng.shuffle(states)
        for name, value in states:
            pv = batch.state.add(state_name=name)
            if value is not None:
                pv.state_value.CopyFrom(value)

        r = rng.random()
        n = rng.randint(1, 8) if r < 0.5 else rng.randint(1, 60) if r < 0.88 else rng.randint(100, 200)
        error_at = rng.randrange(n) if rng.random() < 0.06 else -1
        error_command = None
        for i in range(n):
            inv = batch.invocations.add()
            r = rng.random()
            if r < 0.5:
                inv.caller.CopyFrom(self.address())
            elif r < 0.55:
                inv.caller.SetInParent()  # present but empty: from an ingress too
            elif r < 0.555:  # partial caller addresses (replying to them is an error)
                inv.caller.id = rng.choice(IDS)
                if rng.random() < 0.5:
                    inv.caller.type = "t"
            if i == error_at:
                script = self.script(specs)
                error_command = self.error_command(specs)
                script.insert(rng.randrange(len(script) + 1), error_command)
                inv.argument.CopyFrom(script_value(script))
            elif rng.random() < 0.8:
                inv.argument.CopyFrom(script_value(self.script(specs)))
            else:
                inv.argument.CopyFrom(self.argument())

        if rng.random() < 0.01:  # a function type nobody registered
            batch.target.type = "unregistered"
        return Batch(request, error_command)


def make_python(valspec):
    return logic.make_value(valspec)[0]


def script_value(script: list, ensure_ascii: bool = False) -> TypedValue:
    data = json.dumps(script, ensure_ascii=ensure_ascii).encode("utf-8")
    return TypedValue(typename=logic.SCRIPT_TYPENAME, has_value=True, value=data)


@dataclass
class Batch:
    request: ToFunction
    error_command: list | None = None  # the command put in to make the batch fail, if any

    def bytes(self) -> bytes:
        return self.request.SerializeToString()

    def prefix(self, n: int) -> "Batch":
        request = ToFunction()
        request.CopyFrom(self.request)
        del request.invocation.invocations[n:]
        return Batch(request)


# ---------------------------------------------------------------------------------------------------
# Running both handlers


_OURS = pystatefun.RequestReplyHandler(logic.build_functions(pystatefun))


@dataclass
class Outcome:
    reply: bytes | None = None
    error: dict | None = None  # {"type", "mro", "message"}


@dataclass
class Verdict:
    ok: bool
    reason: str = ""
    official: Outcome = field(default_factory=Outcome)
    ours: Outcome = field(default_factory=Outcome)


def run_official(official, request: bytes) -> Outcome:
    try:
        return Outcome(reply=official.handle(request))
    except OfficialError as e:
        return Outcome(error=e.error)


def run_ours(request: bytes, use_async: bool = False) -> Outcome:
    try:
        if use_async:
            reply = asyncio.run(_OURS.handle_async(request))
        else:
            reply = _OURS.handle_sync(request)
        return Outcome(reply=reply)
    except Exception as e:
        cls = type(e)
        return Outcome(error={"type": cls.__name__, "mro": [c.__name__ for c in cls.__mro__], "message": str(e)})


def reply_text(reply: bytes) -> str:
    message = FromFunction.FromString(reply)
    text = text_format.MessageToString(message, as_utf8=True)
    return text if text else "<empty FromFunction>\n"


def text_diff(official: bytes, ours: bytes, limit: int = 80) -> str:
    a = reply_text(official).splitlines()
    b = reply_text(ours).splitlines()
    lines = list(difflib.unified_diff(a, b, "official", "pystatefun", n=4, lineterm=""))
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more diff lines)"]
    return "\n".join(lines)


def compare(official, request: bytes, use_async: bool = False) -> Verdict:
    theirs = run_official(official, request)
    ours = run_ours(request, use_async)
    verdict = Verdict(True, official=theirs, ours=ours)
    if theirs.error is not None and ours.error is not None:
        if theirs.error["type"] not in ours.error["mro"]:
            verdict.ok = False
            verdict.reason = (
                f"both raised, but the official SDK raised {theirs.error['type']} ({theirs.error['message']}) "
                f"and ours {ours.error['type']} ({ours.error['message']}), which is not a subclass of it"
            )
        return verdict
    if theirs.error is not None:
        verdict.ok = False
        verdict.reason = (
            f"the official SDK raised {theirs.error['type']}: {theirs.error['message']}\n"
            f"ours replied:\n{reply_text(ours.reply)}"
        )
        return verdict
    if ours.error is not None:
        verdict.ok = False
        verdict.reason = (
            f"ours raised {ours.error['type']}: {ours.error['message']}\n"
            f"the official SDK replied:\n{reply_text(theirs.reply)}"
        )
        return verdict
    if FromFunction.FromString(theirs.reply) != FromFunction.FromString(ours.reply):
        verdict.ok = False
        verdict.reason = "the replies differ:\n" + text_diff(theirs.reply, ours.reply)
        return verdict
    if theirs.reply != ours.reply:
        verdict.ok = False
        verdict.reason = (
            "the replies are equal messages but their bytes differ:\n"
            f"official:   {theirs.reply.hex()}\npystatefun: {ours.reply.hex()}"
        )
    return verdict


def describe_invocation(inv: ToFunction.Invocation) -> str:
    if inv.HasField("caller"):
        caller = f"caller={text_format.MessageToString(inv.caller, as_utf8=True, as_one_line=True)!r}"
    else:
        caller = "no caller"
    arg = inv.argument
    if arg.typename == logic.SCRIPT_TYPENAME and arg.has_value:
        body = arg.value.decode("utf-8")
    else:
        body = f"{arg.typename!r} has_value={arg.has_value} value={arg.value.hex()}"
    return f"{caller}; argument: {body}"


def explain(official, seed: int, batch: Batch, verdict: Verdict) -> str:
    """A failure report: the smallest failing prefix of the batch, its state and last invocation."""
    request = batch.request.invocation
    n = len(request.invocations)
    smallest, smallest_verdict = n, verdict
    for k in range(1, n):
        v = compare(official, batch.prefix(k).bytes())
        if not v.ok:
            smallest, smallest_verdict = k, v
            break
    target = request.target
    state_lines = []
    for pv in request.state:
        if pv.HasField("state_value"):
            tv = pv.state_value
            state_lines.append(f"  {pv.state_name}: {tv.typename} has_value={tv.has_value} value={tv.value.hex()}")
        else:
            state_lines.append(f"  {pv.state_name}: (no value)")
    invocations = "\n".join(
        f"  #{i}: {describe_invocation(request.invocations[i])}" for i in range(max(0, smallest - 3), smallest)
    )
    return (
        f"seed {seed}: {n} invocations to {target.namespace}/{target.type} id={target.id!r}; "
        f"the first {smallest} already disagree.\n"
        f"state:\n" + ("\n".join(state_lines) or "  (none)") + "\n"
        f"last invocations of that prefix:\n{invocations}\n"
        f"{smallest_verdict.reason}\n"
        f"(rerun this seed alone with {SEEDS_ENV}={seed})"
    )


# ---------------------------------------------------------------------------------------------------
# The randomized differential test


@pytest.mark.parametrize(
    "seeds", _seed_groups(), ids=lambda seeds: f"seeds_{seeds[0]:04d}-{seeds[-1]:04d}"
)
def test_same_replies_as_official_sdk(official, seeds):
    failures = []
    first_report = None
    for seed in seeds:
        batch = Gen(seed).batch()
        request = batch.bytes()
        verdict = compare(official, request, use_async=seed % 5 == 0)
        if not verdict.ok:
            failures.append(seed)
            if first_report is None:
                first_report = explain(official, seed, batch, verdict)
    if failures:
        pytest.fail(
            f"{len(failures)} of {len(seeds)} seeds disagree with the official SDK: {failures}\n\n{first_report}",
            pytrace=False,
        )


def test_generator_covers_the_protocol():
    """The generated batches exercise every command, state situation and reply kind."""
    ops, situations, sizes, error_commands = set(), set(), [], []
    for seed in DEFAULT_SEEDS:
        batch = Gen(seed).batch()
        if batch.error_command is not None:
            error_commands.append(batch.error_command)
        request = batch.request.invocation
        sizes.append(len(request.invocations))
        typename = f"{request.target.namespace}/{request.target.type}"
        declared = {s[0] for s in logic.FUNCTION_SPECS.get(typename, [])}
        received = {pv.state_name for pv in request.state}
        if declared - received:
            situations.add("absent state")
        for pv in request.state:
            situations.add("state with value" if pv.HasField("state_value") and pv.state_value.has_value
                           else "state without value")
        for inv in request.invocations:
            situations.add("caller" if inv.caller.namespace else "no caller")
            if inv.argument.typename == logic.SCRIPT_TYPENAME:
                for cmd in json.loads(inv.argument.value):
                    ops.add(cmd[0])
            else:
                situations.add("non-script argument")
    assert ops >= {"get", "set", "update", "del", "send", "send_state", "send_after", "cancel", "egress",
                   "egress_state", "kafka", "kinesis", "reply", "whoami", "await"}
    assert len(error_commands) >= 30
    assert situations >= {"absent state", "state with value", "state without value", "caller", "no caller",
                          "non-script argument"}
    assert min(sizes) == 1 and max(sizes) >= 190


# ---------------------------------------------------------------------------------------------------
# Targeted scenarios


def request(function: str, scripts=(), state=None, arguments=(), absent=(), ensure_ascii=False, target=None) -> bytes:
    """A ToFunction for ``function``: every declared state is sent (with its value from ``state``, else
    without one) except those in ``absent``; one invocation per script, then one per raw argument.
    ``target`` replaces the target function type (namespace, type) when given."""
    to_function = ToFunction()
    batch = to_function.invocation
    batch.target.namespace, _, batch.target.type = function.rpartition("/")
    if target is not None:
        batch.target.namespace, batch.target.type = target
    batch.target.id = "id-1"
    state = state or {}
    for name, _, _, _ in logic.FUNCTION_SPECS[function]:
        if name in absent:
            continue
        pv = batch.state.add(state_name=name)
        if name in state:
            pv.state_value.CopyFrom(state[name])
    for script in scripts:
        batch.invocations.add().argument.CopyFrom(script_value(script, ensure_ascii=ensure_ascii))
    for argument in arguments:
        batch.invocations.add().argument.CopyFrom(argument)
    return to_function.SerializeToString()


def typed(key: str, data: bytes) -> TypedValue:
    return TypedValue(typename=logic.TYPE_TYPENAMES[key], has_value=True, value=data)


SYNC = logic.SYNC_FN
NEG_ZERO_DOUBLE = b"\x09" + b"\0" * 7 + b"\x80"
NEG_NAN_DOUBLE = b"\x09" + b"\0" * 6 + b"\xf8\xff"  # what float("inf") - float("inf") is on x86

# Scenarios both SDKs agree on (kept as fixed regression cases next to the random ones).
AGREEMENT = {
    "state-type-mismatch-read": request(SYNC, [[["get", "i"]]], state={"i": typed("string", b"\x0a\x01x")}),
    "state-type-mismatch-unread": request(SYNC, [[["get", "s"]]], state={"i": typed("string", b"\x0a\x01x")}),
    "missing-states-with-expirations": request(
        logic.TTL_FN, [[["get", "seen"]]], absent={"seen", "tiny", "huge", "_under", "zero", "sub_ms"}
    ),
    "all-states-missing": request(logic.ASYNC_FN, [[]], absent={s[0] for s in logic.FUNCTION_SPECS[logic.ASYNC_FN]}),
    "no-effects-empty-reply": request(SYNC, [[], []]),
    "delete-absent-state": request(SYNC, [[["del", "i"], ["del", "p"]]]),
    "set-delete-set": request(SYNC, [[["set", "i", ["int", 5]], ["del", "i"], ["set", "i", ["int", 0]]]]),
    "state-value-without-has-value": request(SYNC, [[["get", "i"], ["update", "i"]]],
                                             state={"i": TypedValue(typename=logic.TYPE_TYPENAMES["string"])}),
    "string-lone-surrogate-message": request(
        SYNC, [[["send", "x/y", "1", "kw", ["string", "\ud800"]]]], ensure_ascii=True
    ),
    "unknown-function": request(SYNC, [[]], target=("compat.fn", "sink")),
    "user-exception": request(logic.ASYNC_FN, [[["set", "s", ["string", "a"]], ["await"], ["raise", "boom"]]]),
}


@pytest.mark.parametrize("name", list(AGREEMENT))
def test_targeted_agreement(official, name):
    verdict = compare(official, AGREEMENT[name])
    if not verdict.ok:
        pytest.fail(verdict.reason, pytrace=False)


# Behaviour differences found while writing these tests: each is a minimal scenario, and the
# explanation says what the official SDK does. They fail until pystatefun behaves like the official SDK.
KNOWN_DIFFERENCES = {  # fixed: "ours" in each explanation is pystatefun before the fix
    # A state read after an assignment in the same batch: the official SDK stores the serialized
    # TypedValue at assignment and deserializes it on every read; ours returns the assigned object.
    "float-state-read-after-write": (
        "the official SDK reads a FloatType state back as the float32 value it stores (0.1 -> "
        "0.10000000149011612); ours returns the assigned 0.1",
        request(SYNC, [[["set", "f", ["float", 0.1]], ["get", "f"]]]),
    ),
    "float-state-updated-twice": (
        "the second update computes from the float32 value in the official SDK, from the unrounded one in ours",
        request(SYNC, [[["update", "f"], ["update", "f"]]], state={"f": typed("float", b"\x0d\xcd\xcc\xcc\x3d")}),
    ),
    "string-state-assigned-bytes": (
        "after `storage.s = b'abc'` the official SDK reads back the str 'abc'; ours the bytes",
        request(SYNC, [[["set", "s", ["bytes_str", "616263"]], ["get", "s"]]]),
    ),
    "bool-state-assigned-int": (
        "after `storage.b = 7` the official SDK reads back True; ours 7",
        request(SYNC, [[["set", "b", ["bool", 7]], ["get", "b"]]]),
    ),
    "int-state-assigned-bool": (
        "after `storage.i = True` the official SDK reads back 1; ours True",
        request(SYNC, [[["set", "i", ["int", True]], ["get", "i"]]]),
    ),
    "double-state-assigned-int": (
        "after `storage.d = 3` the official SDK reads back 3.0; ours the int 3",
        request(SYNC, [[["set", "d", ["double", 3]], ["get", "d"]]]),
    ),
    "json-state-assigned-tuple": (
        "after `storage.j = (1, 2)` the official SDK reads back the list [1, 2]; ours the tuple",
        request(SYNC, [[["set", "j", ["json_tuple", [1, 2]]], ["get", "j"]]]),
    ),
    "json-state-assigned-int-keys": (
        "after `storage.j = {1: 'a'}` the official SDK reads back {'1': 'a'}; ours {1: 'a'}",
        request(SYNC, [[["set", "j", ["json_intkeys", [[1, "a"]]]], ["get", "j"]]]),
    ),
    "json-state-changed-after-assignment": (
        "the official SDK saves the value as it was when assigned; ours serializes at the end of the batch, "
        "so a later in-place change of the assigned object is saved too",
        request(SYNC, [[["set_then_change", "j", ["json", {"a": 1}]]]]),
    ),
    "protobuf-state-changed-after-assignment": (
        "as above, for a protobuf message state",
        request(SYNC, [[["set_then_change", "p", ["ts", 5, 0]]]]),
    ),
    "unserializable-assignment-caught": (
        "the official SDK raises TypeError at `storage.j = {1}` (a set is not JSON), which the function "
        "catches; ours accepts the assignment and fails the whole batch at its end",
        request(SYNC, [[["try_set", "j", ["json_set", [1]]]]]),
    ),
    "unserializable-assignment-overwritten": (
        "the official SDK raises at `storage.j = {1}`; ours does not, and as the state is assigned again "
        "before the batch ends, it never raises",
        request(SYNC, [[["set", "j", ["json_set", [1]]], ["set", "j", ["json", 1]]]]),
    ),
    "string-state-lone-surrogate": (
        "`storage.s = '\\ud800'` raises ValueError at the assignment in the official SDK; ours raises at "
        "the end of the batch, and a TypeError ('function takes exactly 5 arguments') because "
        "Cell.mutation re-raises `type(e)(message)` for a UnicodeEncodeError",
        request(SYNC, [[["set", "s", ["string", "\ud800"]]]], ensure_ascii=True),
    ),
    "string-state-lone-surrogate-caught": (
        "as above, when the function catches the error of the assignment",
        request(SYNC, [[["try_set", "s", ["string", "\ud800"]]]], ensure_ascii=True),
    ),
    # Built-in type encodings (test_type_encodings.py has the full tables).
    "float-message-from-bool": (
        "FloatType accepts bool in the official SDK (True -> 1.0); ours raises TypeError",
        request(SYNC, [[["send", "x/y", "1", "kw", ["float", True]]]]),
    ),
    "double-state-from-bool": (
        "DoubleType accepts bool in the official SDK; ours raises TypeError",
        request(SYNC, [[["set", "d", ["double", False]]]]),
    ),
    "float-message-underflow": (
        "a float below the float32 range is 0.0 for the official SDK, encoded as zero bytes; ours writes "
        "the field out (0d00000000)",
        request(SYNC, [[["send", "x/y", "1", "kw", ["float", 1e-50]]]]),
    ),
    "float-message-above-float32-max": (
        "3.4028235e38 (above FLT_MAX, but rounding to it) is +inf for the official SDK (protobuf's "
        "FloatValueChecker); ours encodes FLT_MAX",
        request(SYNC, [[["send", "x/y", "1", "kw", ["float", 3.4028235e38]]]]),
    ),
    "float-message-huge-int": (
        "FloatType(2**200) is +inf for the official SDK; ours raises struct.error",
        request(SYNC, [[["send", "x/y", "1", "kw", ["float", 2**200]]]]),
    ),
    "string-message-from-bytearray": (
        "StringType rejects bytearray in the official SDK (TypeError); ours encodes it",
        request(SYNC, [[["send", "x/y", "1", "kw", ["bytearray_str", "61"]]]]),
    ),
    "double-state-negative-zero": (
        "the official SDK (pure-python protobuf) reads an explicit -0.0 as 0.0; ours as -0.0",
        request(SYNC, [[["get", "d"]]], state={"d": typed("double", NEG_ZERO_DOUBLE)}),
    ),
    "double-state-negative-nan-rewritten": (
        "the official SDK reads every NaN as math.nan (0x7ff8000000000000), losing sign and payload, and "
        "so writes it back canonical; ours keeps the bits",
        request(SYNC, [[["get", "d"], ["set", "d", ["double", 1.0]], ["del", "d"]], [["update", "f"]]],
                state={"d": typed("double", NEG_NAN_DOUBLE), "f": typed("float", b"\x0d\x01\x00\xc0\x7f")}),
    ),
    "string-state-non-minimal-length-varint": (
        "StringType's fast path in ours (pystatefun/sdk/types.py _decode_string) takes byte[1] as the length "
        "whenever byte[1] == len - 2, also when byte[1] >= 0x80 starts a multi-byte varint; protobuf reads "
        "this valid encoding as 'z' * 125, ours as '\\x00\\n}' + 'z' * 125",
        request(SYNC, [[["get", "s"]]], state={"s": typed("string", b"\x0a\x80\x00\x0a\x7d" + b"z" * 125)}),
    ),
    # The handler and the context.
    "empty-invocation-batch": (
        "a batch without invocations gets an empty FromFunction from the official SDK; ours raises "
        "MalformedRequestError",
        request(logic.STATELESS_FN),
    ),
    "empty-invocation-batch-missing-state": (
        "the official SDK resolves state before looking at invocations, so it asks for the missing states; "
        "ours raises MalformedRequestError",
        request(SYNC, absent={"i"}),
    ),
    "cancel-none-token": (
        "cancel_delayed_message(None) raises TypeError in the official SDK; ValueError in ours",
        request(SYNC, [[["cancel", None]]]),
    ),
    "message-builder-unknown-keyword": (
        "message_builder(..., foo_value=1) raises ValueError in the official SDK; TypeError in ours",
        request(SYNC, [[["send_kw", "x/y", "1", {"foo_value": ["int", 1]}]]]),
    ),
    "message-builder-two-wrong-keywords": (
        "message_builder(..., int_value=1, str_value='a') raises KeyError('value') in the official SDK; "
        "TypeError in ours",
        request(SYNC, [[["send_kw", "x/y", "1", {"int_value": ["int", 1], "str_value": ["string", "a"]}]]]),
    ),
}


@pytest.mark.parametrize("name", list(KNOWN_DIFFERENCES))
def test_known_difference(official, name):
    explanation, request_bytes = KNOWN_DIFFERENCES[name]
    verdict = compare(official, request_bytes)
    if not verdict.ok:
        pytest.fail(f"{explanation}\n\n{verdict.reason}", pytrace=False)


# Differences kept on purpose (docs/sdk.md, "Differences from the official SDK"): the official SDK sends
# what the StateFun runtime then rejects by failing the whole job; pystatefun refuses it in the function,
# with an error that says what to change.
DELIBERATE_DIFFERENCES = {
    "negative-send-after-delay": (
        "send_after with a negative timedelta sends delay_in_ms < 0 in the official SDK; ours raises ValueError",
        request(SYNC, [[["send_after", {"milliseconds": -5}, "x/y", "1", "kw", ["int", 1], None]]]),
    ),
    "cancel-empty-token": (
        "cancel_delayed_message('') sends a cancellation with an empty token in the official SDK; ours "
        "raises ValueError",
        request(SYNC, [[["cancel", ""]]]),
    ),
}


@pytest.mark.parametrize("name", list(DELIBERATE_DIFFERENCES))
def test_deliberate_difference(official, name):
    explanation, request_bytes = DELIBERATE_DIFFERENCES[name]
    theirs = run_official(official, request_bytes)
    ours = run_ours(request_bytes, False)
    assert theirs.error is None, explanation
    assert ours.error is not None and ours.error["type"] == "ValueError", explanation


MALFORMED = {
    "empty-body": b"",  # no invocation batch: official AttributeError, ours MalformedRequestError
    "not-protobuf": b"\xff\xff",  # official DecodeError, ours MalformedRequestError
    "no-function-type": request(logic.STATELESS_FN, [[]], target=("compat.fn", "")),  # official KeyError
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_requests_raise_in_both(official, name):
    """Both raise; the exception classes differ (the official ones are accidents of its code)."""
    theirs = run_official(official, MALFORMED[name])
    ours = run_ours(MALFORMED[name])
    assert theirs.error is not None, f"the official SDK replied {theirs.reply!r}"
    assert ours.error is not None, f"ours replied {ours.reply!r}"
