"""Invocations per second of our RequestReplyHandler against the official SDK's (apache-flink-statefun 3.3.0).

Both handlers serve the same counter function (state ``count``: IntType; per message: read it, add one,
write it, send one int message to ``bench/sink/<id>``) and get the same request bytes: a ToFunction
batch for ``bench/counter/<id>`` carrying ``count`` and N IntType invocations, for N = 1 and N = 100.
The bytes are built once with ``pystatefun.wire.request_reply_pb2``. Before any timing, both replies are
parsed as FromFunction and must be equal (and must hold the expected count and messages).

Each side runs in its own subprocess and interpreter (ours: this python; official: the venv printed by
``scripts/official-sdk-venv``) and times ``await handler.handle_async(request)`` in a loop inside one
running asyncio event loop, for a fixed wall-clock budget after a warm-up. Ours and official alternate
for several rounds and the medians are reported, since the machine is shared. ``handle_sync`` of ours
is measured too, as a secondary line, and so is ``serving.http.invoke``, the path the ASGI app, the
aiohttp handler and ``pystatefun serve`` take (a synchronous function stays on the loop there until it
blocks it: serving/threads.py).
This is a report: it exits 0 whatever the numbers.

Run:  .venv/bin/python bench/sdk_handler.py [--seconds 2] [--rounds 3] [--record [--note TEXT]]
(``--record``: bench/results.py appends the inv/s printed for ours and for the served path, and the
ratios, to docs/benchmarks/results.json and redraws the charts.)

The same file is the worker: ``--worker pystatefun|statefun`` (stdlib imports only at the top, so it
also runs under the official venv, whose protobuf 3.20 cannot load our generated code).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import results as bench_results  # bench/results.py: --record (standard library only, as this file needs)

ROOT = pathlib.Path(__file__).resolve().parent.parent
BATCH_SIZES = (1, 100)
TARGETS = {1: 3.0, 100: 5.0}  # ours/official ratio we aim for
INITIAL_COUNT = 41
TARGET_ID = "user-7"


# ---------------------------------------------------------------------------------------------------------
# Worker: runs under either SDK (same function code, the import name differs)
# ---------------------------------------------------------------------------------------------------------


def make_handler(sdk_name: str):
    sdk = importlib.import_module(sdk_name)
    functions = sdk.StatefulFunctions()

    @functions.bind("bench/counter", specs=[sdk.ValueSpec(name="count", type=sdk.IntType)])
    def counter(context, message):
        count = (context.storage.count or 0) + 1
        context.storage.count = count
        context.send(sdk.message_builder(target_typename="bench/sink", target_id=context.address.id, int_value=count))

    return sdk.RequestReplyHandler(functions)


def timed_loop(call, request: bytes, seconds: float) -> tuple[int, float]:
    """Calls ``call(request)`` until ``seconds`` have passed: (calls, elapsed seconds)."""
    perf = time.perf_counter
    calls = 0
    start = perf()
    deadline = start + seconds
    while True:
        call(request)
        calls += 1
        now = perf()
        if now >= deadline:
            return calls, now - start


async def timed_loop_async(call, request: bytes, seconds: float) -> tuple[int, float]:
    """Awaits ``call(request)`` until ``seconds`` have passed: (calls, elapsed seconds)."""
    perf = time.perf_counter
    calls = 0
    start = perf()
    deadline = start + seconds
    while True:
        await call(request)
        calls += 1
        now = perf()
        if now >= deadline:
            return calls, now - start


def worker(sdk_name: str, request_file: str, modes: list[str], seconds: float) -> None:
    from google.protobuf import __version__ as pb_version
    from google.protobuf.internal import api_implementation

    handler = make_handler(sdk_name)
    request = pathlib.Path(request_file).read_bytes()
    warmup = max(0.2, seconds / 4)
    out: dict = {"runtime": f"CPython {sys.version.split()[0]}, protobuf {pb_version} ({api_implementation.Type()})"}
    for mode in modes:
        if mode == "reply":
            reply = asyncio.run(handler.handle_async(request))
            out["reply"] = base64.b64encode(reply).decode()
        elif mode == "async":

            async def run():
                await timed_loop_async(handler.handle_async, request, warmup)
                return await timed_loop_async(handler.handle_async, request, seconds)

            out["async"] = asyncio.run(run())
        elif mode == "sync":
            timed_loop(handler.handle_sync, request, warmup)
            out["sync"] = timed_loop(handler.handle_sync, request, seconds)
        elif mode == "served":
            from pystatefun.serving import http

            async def served(body: bytes):
                return await http.invoke(handler, body)

            async def run_served():
                await timed_loop_async(served, request, warmup)
                return await timed_loop_async(served, request, seconds)

            out["served"] = asyncio.run(run_served())
    print(json.dumps(out))


# ---------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------


def build_request(batch_size: int) -> bytes:
    from pystatefun import IntType
    from pystatefun.wire.request_reply_pb2 import ToFunction, TypedValue

    def int_value(v: int) -> TypedValue:
        return TypedValue(typename=IntType.typename, has_value=True, value=IntType.serializer().serialize(v))

    request = ToFunction()
    batch = request.invocation
    batch.target.namespace, batch.target.type, batch.target.id = "bench", "counter", TARGET_ID
    batch.state.add(state_name="count", state_value=int_value(INITIAL_COUNT))
    for i in range(batch_size):
        batch.invocations.add(argument=int_value(i))
    return request.SerializeToString()


def run_worker(python: str, sdk_name: str, request_file: str, modes: str, seconds: float) -> dict:
    env = dict(os.environ)
    if sdk_name == "pystatefun":  # this checkout's code, whatever the interpreter has installed
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    cmd = [python, __file__, "--worker", sdk_name, "--request", request_file, "--modes", modes, "--seconds", str(seconds)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"worker {sdk_name} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def check_replies(batch_size: int, ours: dict, official: dict) -> None:
    """Stops the benchmark unless both SDKs give the same, expected reply."""
    from pystatefun import IntType
    from pystatefun.wire.request_reply_pb2 import FromFunction

    ours_reply = FromFunction.FromString(base64.b64decode(ours["reply"]))
    official_reply = FromFunction.FromString(base64.b64decode(official["reply"]))
    if ours_reply != official_reply:
        sys.exit(f"batch {batch_size}: the replies differ\n--- ours:\n{ours_reply}\n--- official:\n{official_reply}")
    result = ours_reply.invocation_result
    decode = IntType.serializer().deserialize
    expected_messages = [INITIAL_COUNT + i for i in range(1, batch_size + 1)]
    sent = [(m.target.namespace, m.target.type, m.target.id, decode(m.argument.value)) for m in result.outgoing_messages]
    mutations = [(m.state_name, decode(m.state_value.value)) for m in result.state_mutations]
    if sent != [("bench", "sink", TARGET_ID, v) for v in expected_messages] or mutations != [
        ("count", INITIAL_COUNT + batch_size)
    ]:
        sys.exit(f"batch {batch_size}: both SDKs agree, but not on the expected reply:\n{ours_reply}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed budget per measurement (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating ours/official rounds (default 3)")
    parser.add_argument("--worker", choices=("pystatefun", "statefun"), help=argparse.SUPPRESS)
    parser.add_argument("--request", help=argparse.SUPPRESS)
    parser.add_argument("--modes", default="async", help=argparse.SUPPRESS)
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.request, args.modes.split(","), args.seconds)

    official_python = subprocess.run(
        [str(ROOT / "scripts" / "official-sdk-venv")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.strip()
    sides = {"ours": (sys.executable, "pystatefun", "reply,async,sync,served"), "official": (official_python, "statefun", "reply,async")}
    results = {b: {"ours": [], "official": [], "ours_sync": [], "ours_served": []} for b in BATCH_SIZES}
    runtime = {}

    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for b in BATCH_SIZES:
            files[b] = os.path.join(tmp, f"request-{b}.bin")
            pathlib.Path(files[b]).write_bytes(build_request(b))
        for b in BATCH_SIZES:
            replies = {side: run_worker(py, sdk, files[b], "reply", 0) for side, (py, sdk, _) in sides.items()}
            check_replies(b, replies["ours"], replies["official"])
            runtime = {side: r["runtime"] for side, r in replies.items()}
        print("replies verified equal for batch sizes", ", ".join(map(str, BATCH_SIZES)), file=sys.stderr)

        for r in range(args.rounds):
            order = ("ours", "official") if r % 2 == 0 else ("official", "ours")  # cancel drift
            for b in BATCH_SIZES:
                for side in order:
                    py, sdk, modes = sides[side]
                    out = run_worker(py, sdk, files[b], modes.removeprefix("reply,"), args.seconds)
                    calls, elapsed = out["async"]
                    results[b][side].append(calls * b / elapsed)
                    if "sync" in out:
                        calls, elapsed = out["sync"]
                        results[b]["ours_sync"].append(calls * b / elapsed)
                    if "served" in out:
                        calls, elapsed = out["served"]
                        results[b]["ours_served"].append(calls * b / elapsed)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    print(f"\nRequestReplyHandler.handle_async, counter function: median of {args.rounds} rounds x {args.seconds:g} s")
    print(f"  ours:     pystatefun, {runtime['ours']}")
    print(f"  official: apache-flink-statefun 3.3.0, {runtime['official']}\n")
    print(f"{'batch':>5}  {'ours inv/s':>11}  {'official inv/s':>14}  {'ratio':>6}  {'target':>6}        per-round ratios")
    handler_runs, ratio_runs = [], []  # for --record: the numbers printed, named as in results.json
    for b in BATCH_SIZES:
        ours, official = statistics.median(results[b]["ours"]), statistics.median(results[b]["official"])
        ratio = ours / official
        status = "met" if ratio >= TARGETS[b] else "MISSED"
        per_round = " ".join(f"{o / f:.1f}x" for o, f in zip(results[b]["ours"], results[b]["official"]))
        print(f"{b:>5}  {ours:>11,.0f}  {official:>14,.0f}  {ratio:>5.1f}x  >= {TARGETS[b]:g}x  {status:<6}  {per_round}")
        handler_runs.append(("pystatefun handler", f"invocations/s, batches of {b}", round(ours)))
        ratio_runs.append(("pystatefun handler", f"× the official SDK's handler, same run, batches of {b}", round(ratio, 1)))
    sync = ", ".join(f"batch {b}: {statistics.median(results[b]['ours_sync']):,.0f} inv/s" for b in BATCH_SIZES)
    print(f"\nours handle_sync (secondary): {sync}")
    served_rates = {b: statistics.median(results[b]["ours_served"]) for b in BATCH_SIZES}
    served = ", ".join(f"batch {b}: {served_rates[b]:,.0f} inv/s" for b in BATCH_SIZES)
    print(f"ours serving.http.invoke (secondary; the served path): {served}")
    if args.record:
        served_runs = [("pystatefun served path", f"invocations/s, batches of {b}", round(served_rates[b]))
                       for b in BATCH_SIZES]
        bench_results.record("sdk_handler", handler_runs + served_runs + ratio_runs, args.note)


if __name__ == "__main__":
    main()
