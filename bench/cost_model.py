"""Where one message's CPU goes, stage by stage: the cost model of issue 23 (the hop workload).

The workload is bench/runtime_chain.py's counter chain (its functions are imported, not copied): each
message increments a counter at its address and sends the next message along a ring of addresses. Four
shapes, as there: embedded and remote (our SDK behind ``pystatefun serve``), each one message per call
(100 chains over 1,000 addresses) and batched (1,000 chains over 100 addresses).

For every shape the script runs the workload twice:

1. without a profiler, to measure the CPU per message (user + system, from /proc): of the runtime's main
   thread (the event loop), of its other threads (the SQLite committer thread, which runs the COMMIT
   and its fsync), and for remote of the ``pystatefun serve`` process;
2. under cProfile timed by the thread's CPU clock (the runtime in this process; the server under a
   profiler of its own, ``SERVER_PROFILER``), and attributes each function's OWN time (tottime) to a
   stage by the table ``RULES`` below.

The profiler inflates the time of every Python call, unevenly, so its seconds are not used as such: the
stages' SHARES of the profile are scaled to the unprofiled CPU of the same thread or process. The
committer thread is not seen by cProfile (it profiles one thread); its CPU is measured directly and shown
as its own stage, unscaled.

The mapping. A function is matched by its file (a path suffix, ``~`` for C functions) and its name (a
regular expression); the first rule that matches gives the stage. C functions and generic helpers
without a rule of their own (``PASS_THROUGH``: builtins, the code of dataclasses and enum, ...) take
the stage of the functions that called them, in proportion to the own time each caller's calls spent in
them (pstats keeps that per caller edge): so ``sqlite3.Cursor.execute`` called by the embedded store
counts as commit, ``IntWrapper.ParseFromString`` called by the SDK's serializer counts as encode/decode
and called by the remote protocol's code as transport. Whatever matches nothing is "other", and the
script prints the biggest such functions so that the table can be fixed.

The same run also measures the bare-loop floor: the hop workload as plain Python (a dict of
protobuf-wrapped ints, a deque, a SQLite WAL commit with synchronous=FULL every 100 ms; ``bare_loop`` of
runtime_chain.py), and prints each shape's rate as a ratio of it.

Run: ``.venv/bin/python bench/cost_model.py`` (about 2-3 minutes; ``--messages`` / ``--remote-messages``
for longer runs, ``--only embedded``). ``--record`` appends the CPU per message of each shape and the
ratios to the floor to docs/benchmarks/results.json (bench/results.py).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import re
import tempfile
import threading
import time
from pathlib import Path

from pystatefun.event_loop import run_event_loop

import results as bench_results  # bench/results.py: --record
from runtime_chain import HERE, SHAPES, bare_loop, cpu_seconds, free_port, module_yaml, run_chain, serve_functions

STAGES = [
    "ingress parse",
    "routing",
    "mailbox / scheduling",
    "invocation setup",
    "SDK context and storage",
    "state/message encode/decode",
    "the function itself",
    "effects",
    "epoch bookkeeping",
    "commit (SQLite, on the loop)",
    "commit (committer thread)",
    "egress",
    "remote transport",
    "event loop",
    "metrics and tracing",
    "other",
]
# Importing modules: the server's profile starts with its imports, which its unprofiled CPU (measured
# from when the runs begin) does not include, so this stage is left out of every share.
STARTUP = "startup (imports), left out"

# (file suffix or "~" for C functions, function-name regex or None for any, stage); first match wins.
# Paths are matched against the profile's file name with "/" separators, so "pystatefun/runtime/routing.py"
# matches the installed or the source tree's file alike.
RULES: list[tuple[str, str | None, str]] = [
    # ingresses: the hop workload has none (the bench routes its first messages itself), kept for others
    # the HTTP server of `pystatefun serve` (also of the runtime's HTTP ingress, unused here): transport
    ("pystatefun/io/http_server.py", None, "remote transport"),
    ("pystatefun/io/", None, "ingress parse"),
    # the runtime core
    ("pystatefun/runtime/routing.py", None, "routing"),
    ("pystatefun/runtime/envelope.py", None, "routing"),
    ("pystatefun/runtime/mailbox.py", None, "mailbox / scheduling"),
    ("pystatefun/runtime/scheduler.py", None, "mailbox / scheduling"),
    ("pystatefun/runtime/flows.py", None, "mailbox / scheduling"),
    ("pystatefun/runtime/cardinality.py", None, "mailbox / scheduling"),
    ("pystatefun/runtime/waiting.py", None, "mailbox / scheduling"),
    ("pystatefun/runtime/invokers.py", r"^(_request|_effects|_negotiate|_typename)$", "remote transport"),
    ("pystatefun/runtime/invokers.py", None, "invocation setup"),
    ("pystatefun/runtime/specs.py", None, "invocation setup"),
    ("pystatefun/app.py", r"^resolve$", "invocation setup"),  # which invoker serves a function type
    ("pystatefun/runtime/health.py", None, "remote transport"),  # an endpoint's health, per call
    ("pystatefun/config/model.py", r"^url_for$", "remote transport"),
    ("pystatefun/runtime/retry.py", None, "invocation setup"),
    ("pystatefun/runtime/effects.py", r"^(read_state|_state|_committed)$", "invocation setup"),
    ("pystatefun/runtime/effects.py", None, "effects"),
    ("pystatefun/runtime/replies.py", None, "effects"),
    ("pystatefun/runtime/timers.py", None, "effects"),
    ("pystatefun/runtime/epoch.py", None, "epoch bookkeeping"),
    ("pystatefun/runtime/commits.py", None, "epoch bookkeeping"),
    ("pystatefun/runtime/processor.py", None, "mailbox / scheduling"),
    ("pystatefun/runtime/transport.py", None, "remote transport"),
    ("pystatefun/backends/embedded.py", None, "commit (SQLite, on the loop)"),
    # the SDK (runs in the runtime when embedded, in `pystatefun serve` when remote)
    ("pystatefun/sdk/types.py", None, "state/message encode/decode"),
    ("pystatefun/sdk/messages.py", None, "state/message encode/decode"),
    ("pystatefun/sdk/context.py", None, "SDK context and storage"),
    ("pystatefun/sdk/storage.py", None, "SDK context and storage"),
    ("pystatefun/sdk/address.py", None, "SDK context and storage"),
    ("pystatefun/sdk/value_spec.py", None, "SDK context and storage"),
    ("pystatefun/sdk/egress.py", None, "egress"),
    ("pystatefun/sdk/batch.py", None, "invocation setup"),
    ("pystatefun/sdk/functions.py", None, "invocation setup"),
    # the function server: its request handler is the remote side's invocation setup; HTTP is transport
    ("pystatefun/serving/handler.py", None, "invocation setup"),
    ("pystatefun/serving/", None, "remote transport"),
    ("pystatefun/wire/values.py", None, "state/message encode/decode"),  # PlainTypedValue: made, serialized
    ("pystatefun/wire/", None, "remote transport"),
    ("pystatefun/tracing/", None, "metrics and tracing"),
    ("pystatefun/admin/metrics.py", None, "metrics and tracing"),
    ("prometheus_client/", None, "metrics and tracing"),
    ("opentelemetry/", None, "metrics and tracing"),
    # imports (the server's profile starts with them)
    ("<frozen importlib", None, STARTUP),
    ("", r"^<module>$", STARTUP),
    ("~", r"builtins\.compile|marshal\.loads|_imp\.|builtins\.__build_class__", STARTUP),
    # the function of bench/functions/chain.py
    ("/chain.py", r"^counter$", "the function itself"),
    # C functions with a stage of their own, whoever calls them
    ("~", r"sqlite3", "commit (SQLite, on the loop)"),
    ("~", r"'_socket\.socket'|<built-in method (select|poll)|'select\.epoll'", "event loop"),
    # the event loop
    ("asyncio/", None, "event loop"),
    ("/selectors.py", None, "event loop"),
    ("/socket.py", None, "event loop"),
    ("pystatefun/event_loop.py", None, "event loop"),
    ("uvloop/", None, "event loop"),
    ("aiohttp/", None, "remote transport"),
    ("/http/client.py", None, "remote transport"),
    ("/http/", None, "remote transport"),
    ("/email/", None, "remote transport"),
    ("/concurrent/futures/", None, "commit (SQLite, on the loop)"),  # handing COMMIT to the committer
    ("/threading.py", None, "commit (SQLite, on the loop)"),
    ("/ssl.py", None, "remote transport"),  # the HTTP client's TLS context, made at start
    ("~", r"_ssl\.", "remote transport"),
    ("/logging/", None, "other"),
    ("~", r"gc\.collect", "other"),  # the explicit collections at the application's start and stop
]

# Files whose functions take their callers' stage (C functions without a rule above, and generic code).
PASS_THROUGH = ("~", "<string>", "<frozen abc>", "/re/", "/re.py", "/enum.py", "/dataclasses.py", "/typing.py", "/abc.py", "/functools.py",
                "/contextlib.py", "/copy.py", "/weakref.py", "/_weakrefset.py", "/types.py", "/operator.py",
                "google/protobuf/")


# `python -c SERVER_PROFILER -m pystatefun.cli serve ...`: the server under cProfile, timed by its thread's
# CPU time like the runtime's profile (uvloop is Cython: the profiler sees none of its calls and charges
# its time to the Python caller, so a wall-clock profile would count the loop's waiting as its work);
# the profile is written when SIGTERM stops the server. The profiler slows calls down enough that the
# server would move the function to its threads (serving/threads.py: two calls over 10 ms), out of this
# profile's sight and onto a path the unprofiled server does not take; so here it stays on the loop.
SERVER_PROFILER = """
import cProfile, runpy, sys, time
import pystatefun.serving.threads
pystatefun.serving.threads.SLOW_CALL_SECONDS = float("inf")  # see above
sys.argv = sys.argv[2:]
profiler = cProfile.Profile(time.thread_time)
profiler.enable()
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit:
    pass
finally:
    profiler.disable()
    profiler.dump_stats({path!r})
"""
# The unprofiled server keeps the function on the loop too: on this shared machine a descheduled call
# sometimes takes over 10 ms, and the two paths must be the same for the profile's shares to apply.
SERVER_ON_LOOP = """
import runpy, sys
import pystatefun.serving.threads
pystatefun.serving.threads.SLOW_CALL_SECONDS = float("inf")
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def stage_by_rule(filename: str, function: str) -> str | None:
    filename = filename.replace(os.sep, "/")
    for where, name, stage in RULES:
        if (filename == "~" if where == "~" else where in filename) and (name is None or re.search(name, function)):
            return stage
    return None


def attribute(stats: pstats.Stats) -> dict[tuple[str, str], float]:
    """Own time per (stage, "file:line:function")."""
    table = stats.stats  # func -> (cc, nc, tottime, cumtime, callers: caller -> (cc, nc, tt, ct))
    memo: dict[tuple, dict[str, float]] = {}

    def shares(func: tuple, depth: int = 0) -> dict[str, float]:
        """The stage of ``func`` as fractions (a pass-through function splits over its callers)."""
        if func in memo:
            return memo[func]
        filename, _, name = func
        stage = stage_by_rule(filename, name)
        if stage is None and depth < 8 and any(p == filename if p == "~" else p in filename for p in PASS_THROUGH):
            callers = table.get(func, (0, 0, 0, 0, {}))[4]
            weights = {caller: edge[2] for caller, edge in callers.items() if edge[2] > 0}
            total = sum(weights.values())
            if total > 0:
                result: dict[str, float] = collections.defaultdict(float)
                memo[func] = {"other": 1.0}  # a cycle back to here counts as other
                for caller, weight in weights.items():
                    for s, fraction in shares(caller, depth + 1).items():
                        result[s] += fraction * weight / total
                memo[func] = dict(result)
                return memo[func]
        memo[func] = {stage or "other": 1.0}
        return memo[func]

    by_function: dict[tuple[str, str], float] = collections.defaultdict(float)
    for func, (_, _, tottime, _, _) in table.items():
        for stage, fraction in shares(func).items():
            by_function[(stage, f"{func[0]}:{func[1]}:{func[2]}")] += tottime * fraction
    return dict(by_function)


def thread_cpu(tid: int) -> float:
    """CPU seconds (user + system) of thread ``tid`` of this process (Linux /proc)."""
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Shape:
    def __init__(self, kind: str, chains: int, ring: int, messages: int):
        self.kind, self.chains, self.ring, self.messages = kind, chains, ring, messages
        self.name = f"{kind}, {'one message per call' if chains < ring else 'batched'}"
        self.seconds = self.batch = 0.0
        self.cpu = {"main": 0.0, "threads": 0.0, "server": 0.0}  # unprofiled CPU seconds
        # "main" / "server" -> (stage, function) -> profiled own seconds
        self.functions: dict[str, dict[tuple[str, str], float]] = {}

    def shares(self, side: str) -> dict[tuple[str, str], float]:
        """(stage, function) -> share of the side's profile, without startup (imports: see STARTUP)."""
        functions = {key: seconds for key, seconds in self.functions.get(side, {}).items() if key[0] != STARTUP}
        total = sum(functions.values()) or 1.0
        return {key: seconds / total for key, seconds in functions.items()}

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def us_per_message(self, sides: tuple[str, ...] = ("main", "server")) -> dict[str, float]:
        """µs of CPU per message per stage: the profile's shares scaled to the unprofiled CPU; of the
        runtime ("main", with its committer thread) and the server ("server")."""
        result: dict[str, float] = collections.defaultdict(float)
        for side in sides:
            for (stage, _), share in self.shares(side).items():
                result[stage] += 1e6 * self.cpu[side] * share / self.messages
        if "main" in sides:
            result["commit (committer thread)"] += 1e6 * self.cpu["threads"] / self.messages
        return result


def measure(shape: Shape, folder: Path, port: int, server_pid: int | None) -> None:
    """The unprofiled run: seconds, msgs per call, CPU of the main thread, other threads and the server."""
    data = folder / f"plain-{shape.kind}-{shape.chains}"
    module = module_yaml(folder, shape.kind, port)
    main_tid = threading.get_native_id()
    cpu, main, server = cpu_seconds(), thread_cpu(main_tid), cpu_seconds(server_pid) if server_pid else 0.0
    shape.seconds, shape.batch = run_event_loop(run_chain(module, data, shape.messages, shape.chains, shape.ring))
    cpu, main = cpu_seconds() - cpu, thread_cpu(main_tid) - main
    shape.cpu["main"], shape.cpu["threads"] = main, max(cpu - main, 0.0)
    if server_pid:
        shape.cpu["server"] = cpu_seconds(server_pid) - server


def profile(shape: Shape, folder: Path, port: int) -> None:
    """The profiled run, of the runtime here and, for remote, of a server of its own under cProfile."""
    data = folder / f"profiled-{shape.kind}-{shape.chains}"
    server = None
    if shape.kind == "remote":
        port = free_port()
        server_profile = folder / f"server-{shape.chains}.prof"
        server = serve_functions(port, python_options=("-c", SERVER_PROFILER.format(path=str(server_profile))))
    try:
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        run_event_loop(run_chain(module_yaml(folder, shape.kind, port), data, shape.messages, shape.chains, shape.ring))
        profiler.disable()
    finally:
        if server is not None:
            server.terminate()
            server.wait(60)
    sides = [("main", pstats.Stats(profiler))]
    if server is not None:
        sides.append(("server", pstats.Stats(str(server_profile))))
    for side, stats in sides:
        shape.functions[side] = attribute(stats)


def print_table(shapes: list[Shape]) -> None:
    print("\nCPU per message by stage: µs (% of the shape's total). The stages' shares come from cProfile "
          "(own time); they are scaled to the CPU measured without the profiler. Remote: total = runtime + server.")
    header = "| stage | " + " | ".join(s.name for s in shapes) + " |"
    print(header)
    print("|---|" + "---:|" * len(shapes))
    costs = [s.us_per_message() for s in shapes]
    runtime_costs = [s.us_per_message(("main",)) for s in shapes]
    for stage in STAGES:
        cells = []
        for shape, cost, runtime_cost in zip(shapes, costs, runtime_costs):
            total = sum(cost.values())
            us = cost.get(stage, 0.0)
            text = f"{us:.1f} ({100 * us / total:.0f}%)" if us >= 0.05 else "-"
            if shape.kind == "remote" and us >= 0.05:
                runtime = runtime_cost.get(stage, 0.0)
                text = f"{us:.1f} = {runtime:.1f} + {us - runtime:.1f} ({100 * us / total:.0f}%)"
            cells.append(text)
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("| **total CPU per message (unprofiled)** | " + " | ".join(
        f"**{sum(c.values()):.1f}**" for c in costs) + " |")
    cells = []
    for shape in shapes:
        m = 1e6 / shape.messages
        text = f"{m * shape.cpu['main']:.1f} loop + {m * shape.cpu['threads']:.1f} committer"
        if shape.kind == "remote":
            text += f" + {m * shape.cpu['server']:.1f} server"
        cells.append(text)
    print("| of which | " + " | ".join(cells) + " |")
    print("| msgs per call | " + " | ".join(f"{s.batch:.1f}" for s in shapes) + " |")
    print("| messages/s | " + " | ".join(f"{s.rate:,.0f}" for s in shapes) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages per embedded run (default 100,000)")
    parser.add_argument("--remote-messages", type=int, default=40_000, help="messages per remote run (default 40,000)")
    parser.add_argument("--floor-messages", type=int, default=200_000, help="messages of the bare loop")
    parser.add_argument("--only", choices=["embedded", "remote"], help="only these shapes")
    parser.add_argument("--functions", type=int, default=0,
                        help="also print the N biggest functions of every stage, per shape (to check the mapping)")
    parser.add_argument("--unmapped", type=int, default=12, help="how many of the biggest unmapped functions to print")
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()
    shapes = [Shape(kind, chains, ring, args.messages if kind == "embedded" else args.remote_messages)
              for kind in ("embedded", "remote") if args.only in (None, kind) for chains, ring in SHAPES]
    floors = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "chain.py").write_text((HERE / "functions" / "chain.py").read_text())
        for chains, ring in SHAPES:
            floor_dir = folder / f"floor-{chains}"
            floor_dir.mkdir()
            floors[(chains, ring)] = bare_loop(args.floor_messages, chains, ring, floor_dir)
        port = free_port()
        server = serve_functions(port, python_options=("-c", SERVER_ON_LOOP)) if any(s.kind == "remote" for s in shapes) else None
        try:
            for shape in shapes:
                measure(shape, folder, port, server.pid if server and shape.kind == "remote" else None)
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
        for shape in shapes:
            profile(shape, folder, port)

    print("hop workload (bench/runtime_chain.py's counter chain), durable commits (SQLite WAL, synchronous=FULL), "
          "commit interval 100 ms; remote = our SDK behind `pystatefun serve` on this machine.")
    print("No ingress: the bench routes each chain's first message itself, so 'ingress parse' is empty.")
    print_table(shapes)

    print("\nbare-loop floor (plain Python: dict of IntWrapper bytes, a deque, a SQLite WAL commit every 100 ms), same run:")
    runs = []
    for (chains, ring), (seconds, cpu) in floors.items():
        rate = args.floor_messages / seconds
        print(f"  {chains:,} chains over {ring:,} addresses: {rate:,.0f} messages/s, {1e6 * cpu / args.floor_messages:.1f} µs CPU per message")
        for shape in shapes:
            if (shape.chains, shape.ring) == (chains, ring):
                ratio = shape.rate / rate
                print(f"    {shape.name}: {shape.rate:,.0f} messages/s = {ratio:.3f} of the floor")
                runs.append(("pystatefun", f"× the bare-loop floor, {shape.name}", round(ratio, 3)))
    for shape in shapes:
        runs.append(("pystatefun", f"CPU µs per message, {shape.name}", round(sum(shape.us_per_message().values()), 1)))

    for shape in shapes if args.functions else ():
        print(f"\n{shape.name}: the biggest functions of each stage (share of their side's profile):")
        for stage in STAGES:
            rows = [(share, f"{side}: {name}") for side in shape.functions
                    for (s, name), share in shape.shares(side).items() if s == stage]
            if rows:
                print(f"  {stage}:")
                for share, name in sorted(rows, reverse=True)[: args.functions]:
                    print(f"    {100 * share:5.2f}%  {name}")
    if shapes:
        print("\nthe biggest functions no rule maps (share of their side's profile, summed over shapes), "
              "to extend RULES with:")
        merged: dict[str, float] = collections.defaultdict(float)
        for shape in shapes:
            for side in shape.functions:
                for (stage, name), share in shape.shares(side).items():
                    if stage == "other":
                        merged[f"{side}: {name}"] += share / len(shapes)
        for name, share in sorted(merged.items(), key=lambda kv: -kv[1])[: args.unmapped]:
            print(f"  {100 * share:5.2f}%  {name}")
    print("\nOne run on a shared machine: totals moved by up to half between runs of one hour on these 2-core "
          "machines, the shares by a few points; compare shares, and ratios within one run.")
    if args.record:
        bench_results.record("cost_model", runs, args.note)


if __name__ == "__main__":
    main()
