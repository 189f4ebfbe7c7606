"""The compiled build against the pure one, side by side in one run: the hop workload, embedded.

bench/runtime_chain.py's counter chain (its functions and ``run_chain``, imported), embedded, in both
shapes (100 chains over 1,000 addresses: one message per call; 1,000 chains over 100 addresses:
batched), once per build per round, the builds alternating round after round, each run in a fresh
process of its own; plus the bare-loop floor of bench/runtime_chain.py in every round. Prints messages/s
and CPU µs per message (of the whole runtime process: event loop and committer thread) of every run,
the median per build and shape, the ratio of each build to the pure one, and each median as a share of
the floor's median.

The builds. By default two: ``pure`` is a copy of the installed package's ``.py`` files without its
extension modules (in a temporary folder put first on PYTHONPATH), ``compiled`` the package as
installed, which must hold compiled modules (the script stops if it has none). ``--build NAME=FOLDER``
(repeatable) names builds of its own: a FOLDER holding a ``pystatefun`` package, or ``pure`` for the
copy described above, or ``installed``. The compiled build was tried and not kept (docs/benchmarks.md,
"compiled"): commit 79ee08e in the history of main has it (``HATCH_BUILD_HOOK_ENABLE_MYPYC=true pip
install .`` there, in a venv of its own, then run this script with that venv's Python).

Run: ``.venv/bin/python bench/compiled.py`` (about 3 minutes; ``--rounds``, ``--messages``). With
``--record`` the medians' ratios (compiled / pure) are appended to docs/benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import results as bench_results  # bench/results.py: --record

HERE = Path(__file__).resolve().parent
SHAPES = [(100, 1000), (1000, 100)]  # (chains, ring size), as bench/runtime_chain.py

# one run of one shape in a process of its own: prints a JSON line
CHILD = """
import json, sys, time
sys.path.insert(0, {bench!r})
import pystatefun.runtime.scheduler as probe
from pathlib import Path
from pystatefun.event_loop import run_event_loop
from runtime_chain import cpu_seconds, module_yaml, run_chain
folder = Path({folder!r})
messages, chains, ring = {messages}, {chains}, {ring}
cpu = cpu_seconds()
seconds, batch = run_event_loop(run_chain(module_yaml(folder, "embedded", None), folder / "data", messages, chains, ring))
cpu = cpu_seconds() - cpu
print(json.dumps({{"seconds": seconds, "cpu": cpu, "batch": batch, "module": probe.__file__}}))
"""


def installed_package() -> Path:
    import pystatefun
    return Path(pystatefun.__file__).resolve().parent


def extension_modules(package: Path) -> list[Path]:
    """The compiled modules of a package folder (and mypyc's shared library next to it)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    found = [path for path in package.rglob("*") if path.name.endswith(suffixes)]
    found += [path for path in package.parent.glob("*__mypyc*") if path.name.endswith(suffixes)]
    return found


def pure_copy(package: Path, into: Path) -> Path:
    """A copy of ``package`` with its source files only; returns the folder to put on PYTHONPATH."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    shutil.copytree(package, into / "pystatefun",
                    ignore=lambda _, names: [n for n in names if n.endswith(suffixes) or n == "__pycache__"])
    return into


def run_once(root: Path | None, folder: Path, messages: int, chains: int, ring: int) -> dict:
    run = folder / f"run-{chains}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    shutil.copy(HERE / "functions" / "chain.py", run / "chain.py")
    env = dict(os.environ)
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    code = CHILD.format(bench=str(HERE), folder=str(run), messages=messages, chains=chains, ring=ring)
    done = subprocess.run([sys.executable, "-c", code], cwd=run, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"a run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each runs every build and shape once (default 5)")
    parser.add_argument("--messages", type=int, default=100_000, help="messages per run (default 100,000)")
    parser.add_argument("--floor-messages", type=int, default=200_000, help="messages of the bare loop")
    parser.add_argument("--build", action="append", metavar="NAME=FOLDER",
                        help="a build to measure: FOLDER holds a pystatefun package, or is 'pure' or 'installed' "
                             "(default: pure=pure compiled=installed)")
    bench_results.add_record_arguments(parser)
    args = parser.parse_args()

    from runtime_chain import bare_loop  # bench/runtime_chain.py (imports pystatefun: after the arguments)

    installed = installed_package()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        builds: dict[str, Path | None] = {}
        for spec in args.build or ["pure=pure", "compiled=installed"]:
            name, _, where = spec.partition("=")
            if where == "pure":
                builds[name] = pure_copy(installed, folder / "pure")
            elif where == "installed":
                if not extension_modules(installed):
                    raise SystemExit(f"the installed package ({installed}) has no compiled modules: name builds with "
                                     "--build (docs/benchmarks.md, compiled)")
                builds[name] = None
            else:
                builds[name] = Path(where).resolve()
        for name, root in builds.items():
            package = (root / "pystatefun") if root is not None else installed
            print(f"{name}: {package} ({len(extension_modules(package))} compiled modules)")

        rates: dict[tuple[str, int], list[float]] = {(name, chains): [] for name in builds for chains, _ in SHAPES}
        cpus: dict[tuple[str, int], list[float]] = {key: [] for key in rates}
        floors: dict[int, list[float]] = {chains: [] for chains, _ in SHAPES}
        print(f"\nhop workload, embedded, {args.messages:,} messages per run, durable commits (SQLite WAL, "
              "synchronous=FULL), commit interval 100 ms; builds alternating, a process per run")
        print(f"{'round':>5} {'build':12} {'shape':32} {'msg/s':>9} {'CPU µs/msg':>10} {'msgs/call':>9}")
        for round_ in range(1, args.rounds + 1):
            for chains, ring in SHAPES:
                floor_dir = folder / f"floor-{round_}-{chains}"
                floor_dir.mkdir()
                seconds, _ = bare_loop(args.floor_messages, chains, ring, floor_dir)
                floors[chains].append(args.floor_messages / seconds)
            order = list(builds.items()) if round_ % 2 else list(reversed(builds.items()))
            for chains, ring in SHAPES:  # per shape, the builds one after the other: the fairest pairs
                for name, root in order:
                    result = run_once(root, folder, args.messages, chains, ring)
                    if root is not None and not result["module"].startswith(str(root)):
                        raise SystemExit(f"{name} imported {result['module']}, not its own build")
                    rate, cpu = args.messages / result["seconds"], 1e6 * result["cpu"] / args.messages
                    rates[(name, chains)].append(rate)
                    cpus[(name, chains)].append(cpu)
                    print(f"{round_:5} {name:12} {shape_name(chains, ring):32} {rate:9,.0f} {cpu:10.1f} "
                          f"{result['batch']:9.1f}", flush=True)

        first = next(iter(builds))
        runs = []
        print(f"\nmedians of {args.rounds} rounds; ratios = the median of each round's ratio (messages/s of the build / "
              f"of {first}, CPU per message of {first} / of the build): the load of a shared machine drifts "
              "between rounds, less between two runs of one round")
        for chains, ring in SHAPES:
            floor = statistics.median(floors[chains])
            print(f"  {shape_name(chains, ring)} (bare-loop floor {floor:,.0f} messages/s):")
            for name in builds:
                rate, cpu = statistics.median(rates[(name, chains)]), statistics.median(cpus[(name, chains)])
                speed = statistics.median(r / b for r, b in zip(rates[(name, chains)], rates[(first, chains)]))
                saving = statistics.median(b / c for c, b in zip(cpus[(name, chains)], cpus[(first, chains)]))
                print(f"    {name:12} {rate:9,.0f} messages/s {cpu:6.1f} µs CPU/msg   ×{speed:.2f} "
                      f"(CPU ×{saving:.2f})   {rate / floor:.3f} of the floor")
                if name != first:
                    runs.append((f"{name} / {first}", f"× messages/s, embedded, {shape_name(chains, ring)}",
                                 round(speed, 3)))
                runs.append((name, f"× the bare-loop floor, embedded, {shape_name(chains, ring)}", round(rate / floor, 3)))
        print("\nOne run on a shared machine: compare the builds within this run, not across runs.")
    if args.record:
        bench_results.record("compiled", runs, args.note)


def shape_name(chains: int, ring: int) -> str:
    return "one message per call" if chains < ring else "batched"


if __name__ == "__main__":
    main()
