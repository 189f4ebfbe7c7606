"""PlainTypedValue (wire/values.py) against protobuf's TypedValue (upb), the decision of issue 23's third pass.

Every message a function sends and every state value it writes is a TypedValue. This times, in one
process, rounds alternating, what the runtime and the SDK do with one: make it (the SDK's way for each:
``typed_value()`` for a plain one, fields set one by one for protobuf, which is faster than its keyword
constructor), read its three fields, serialize it (the commit and a remote call do), and compare two.
Prints the best of the rounds in ns and the ratio protobuf / plain.

Run: ``.venv/bin/python bench/typed_values.py`` (about 20 seconds); with ``--record`` the times printed are
appended to docs/benchmarks/results.json and the chart redrawn (bench/results.py).
"""

from __future__ import annotations

import argparse
import timeit

from pystatefun.sdk.messages import typed_value
from pystatefun.wire.request_reply_pb2 import TypedValue
from pystatefun.wire.values import PlainTypedValue

import results as bench_results  # bench/results.py: --record

TYPENAME = "io.statefun.types/int"
DATA = b"\x0d\x2a\x00\x00\x00"  # IntType's 42


def make_protobuf() -> TypedValue:
    tv = TypedValue()
    tv.typename = TYPENAME
    tv.has_value = True
    tv.value = DATA
    return tv


def make_plain() -> PlainTypedValue:
    return typed_value(TYPENAME, DATA)


def cases() -> dict[str, tuple]:
    plain, proto = make_plain(), make_protobuf()
    other_plain, other_proto = make_plain(), make_protobuf()
    return {
        "make": (make_protobuf, make_plain),
        "read the three fields": (lambda: (proto.typename, proto.has_value, proto.value),
                                  lambda: (plain.typename, plain.has_value, plain.value)),
        "serialize": (proto.SerializeToString, plain.SerializeToString),
        "compare (==)": (lambda: proto == other_proto, lambda: plain == other_plain),
        "make, read twice, drop (a message's life)": (
            lambda: (lambda tv: (tv.has_value, tv.value, tv.typename, tv.has_value, tv.value))(make_protobuf()),
            lambda: (lambda tv: (tv.has_value, tv.value, tv.typename, tv.has_value, tv.value))(make_plain())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=200_000)
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    assert make_plain().SerializeToString() == make_protobuf().SerializeToString()
    best: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        for name, pair in cases().items():
            order = (0, 1) if round_ % 2 == 0 else (1, 0)
            times = best.setdefault(name, [float("inf"), float("inf")])
            for i in order:
                seconds = timeit.timeit(pair[i], number=args.number) / args.number
                times[i] = min(times[i], seconds)
    print(f"{'ns per operation, best of ' + str(args.rounds) + ' rounds':45} {'protobuf':>10} {'plain':>10} {'ratio':>7}")
    runs = []
    for name, (proto, plain) in best.items():
        print(f"{name:45} {proto * 1e9:10.0f} {plain * 1e9:10.0f} {proto / plain:6.2f}x")
        runs += [("protobuf (upb)", f"ns, {name}", round(proto * 1e9)), ("PlainTypedValue", f"ns, {name}", round(plain * 1e9))]
    if args.record:
        bench_results.record("typed_values", runs, args.note)


if __name__ == "__main__":
    main()
