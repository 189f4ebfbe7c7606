"""Records what a bench script measured: appends its runs to docs/benchmarks/results.json and redraws that
bench's charts with bench/charts.py.

Every script in bench/ takes ``--record`` (and ``--note TEXT``) through ``add_record_arguments``; after its
run it passes the numbers it printed to ``record``, which appends one run per number, with today's date
(UTC) and the same ``system`` and ``metric`` names the bench's earlier runs have, so its history goes on.
Runs already in the file are kept as they are.

The file is docs/benchmarks/results.json, or the one named by $PYSTATEFUN_BENCH_RESULTS (a copy, to try
things out); the charts are written next to it. Only the standard library is imported at the top: the
workers of sdk_handler.py import this file under the official SDK's venv, which has no matplotlib.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
from collections.abc import Iterable

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE.parent / "docs" / "benchmarks" / "results.json"
RESULTS_ENV = "PYSTATEFUN_BENCH_RESULTS"


def results_path(path: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """``path`` if given, else $PYSTATEFUN_BENCH_RESULTS if set, else docs/benchmarks/results.json."""
    return pathlib.Path(path or os.environ.get(RESULTS_ENV) or RESULTS)


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record", action="store_true",
        help="after the run, append the numbers printed that docs/benchmarks/results.json keeps for this bench "
             f"to it (or to ${RESULTS_ENV}), dated today (UTC), and redraw the bench's charts next to it",
    )
    parser.add_argument("--note", help="a note kept with every run --record appends (what was different)")


def record(bench: str, runs: Iterable[tuple[str, str, float]], note: str | None = None,
           path: str | os.PathLike[str] | None = None) -> list[pathlib.Path]:
    """Appends ``runs``, each (system, metric, value), as runs of ``bench`` dated today (UTC), with ``note``
    if given, to the results file (``results_path(path)``); then redraws the charts of ``bench`` next to
    it. Says so on stderr and returns the chart files written."""
    path = results_path(path)
    date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    new = []
    for system, metric, value in runs:
        run = {"bench": bench, "date": date, "system": system, "metric": metric, "value": value}
        if note:
            run["note"] = note
        new.append(run)
    if not new:
        raise ValueError(f"no runs of {bench} to record")
    existing = json.loads(path.read_text(encoding="utf-8"))
    written = path.with_name(path.name + ".tmp")
    written.write_text(json.dumps(existing + new, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    written.replace(path)  # whole or not at all

    import charts  # matplotlib only now, and only here (bench/ is on sys.path for its scripts)

    drawn = charts.draw(path, benches=[bench])
    print(f"recorded {len(new)} runs of {bench} in {path}; drew {', '.join(map(str, drawn))}", file=sys.stderr)
    return drawn
