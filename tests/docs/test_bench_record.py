"""Bench scripts record what they measured (``--record``): bench/results.py appends the runs to
docs/benchmarks/results.json and redraws that bench's charts with bench/charts.py. These tests record into
a copy of results.json; no benchmark runs here."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
RESULTS = ROOT / "docs" / "benchmarks" / "results.json"
RESULTS_ENV = "PYSTATEFUN_BENCH_RESULTS"
SCRIPTS = ["keyed_counter", "kafka_backend", "runtime_chain", "sdk_handler", "ingress_latency", "http_servers", "savepoints",
           "tracing", "cost_model", "compiled", "kinesis_io", "typed_values", "gil_handover"]


# A bench script's view: bench/ first on sys.path. In a process of its own, because in pytest's tests/ is
# on sys.path and tests/packaging hides the packaging module matplotlib imports.
RECORD = """
import json, sys
import results
drawn = results.record(**json.loads(sys.argv[1]))
print(json.dumps([str(path) for path in drawn]))
"""


def record(env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed (pip install -e '.[dev]')")
    environment = {name: value for name, value in os.environ.items() if name != RESULTS_ENV} | (env or {})
    return subprocess.run([sys.executable, "-c", RECORD, json.dumps(kwargs)], cwd=BENCH, env=environment,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("through", ["argument", "environment"])
def test_record_appends_runs_keeps_the_old_ones_and_draws_the_chart(tmp_path: pathlib.Path, through: str) -> None:
    copy = tmp_path / "results.json"
    shutil.copy(RESULTS, copy)
    real = RESULTS.read_bytes()
    old = json.loads(copy.read_text(encoding="utf-8"))
    runs = [["pystatefun handler", "invocations/s, batches of 1", 61234],
            ["pystatefun handler", "× the official SDK's handler, same run, batches of 1", 7.9]]
    if through == "environment":
        done = record({RESULTS_ENV: str(copy)}, bench="sdk_handler", runs=runs, note="a test")
    else:
        done = record(bench="sdk_handler", runs=runs, note="a test", path=str(copy))
    assert done.returncode == 0, done.stderr
    assert f"recorded 2 runs of sdk_handler in {copy}" in done.stderr

    now = json.loads(copy.read_text(encoding="utf-8"))
    assert now[:len(old)] == old  # every earlier run kept, as it was
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert now[len(old):] == [
        {"bench": "sdk_handler", "date": today, "system": system, "metric": metric, "value": value, "note": "a test"}
        for system, metric, value in runs
    ]
    drawn = [pathlib.Path(path) for path in json.loads(done.stdout)]
    chart = tmp_path / "sdk_handler.svg"
    assert chart in drawn and chart.read_text(encoding="utf-8").startswith("<?xml")
    assert f"sdk_handler ({today})" in chart.read_text(encoding="utf-8")  # the latest date: the runs just added
    assert {path.parent for path in drawn} == {tmp_path}  # the charts go next to the file recorded into
    assert RESULTS.read_bytes() == real


def test_the_file_keeps_its_format(tmp_path: pathlib.Path) -> None:
    """Appending changes nothing above the new runs, so a recorded run is a diff of added lines only."""
    copy = tmp_path / "results.json"
    shutil.copy(RESULTS, copy)
    before = copy.read_text(encoding="utf-8")
    done = record(bench="http_servers", runs=[["aiohttp", "requests/s", 15000]], path=str(copy))
    assert done.returncode == 0, done.stderr
    after = copy.read_text(encoding="utf-8")
    assert after.startswith(before.rstrip().removesuffix("]").rstrip())
    assert "µs" in after and after.endswith("}\n]\n")
    assert "note" not in json.loads(after)[-1]  # no --note, no note


def test_nothing_to_record_is_an_error(tmp_path: pathlib.Path) -> None:
    copy = tmp_path / "results.json"
    shutil.copy(RESULTS, copy)
    done = record(bench="sdk_handler", runs=[], path=str(copy))
    assert done.returncode != 0 and "ValueError: no runs of sdk_handler to record" in done.stderr
    assert copy.read_bytes() == RESULTS.read_bytes()


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_bench_script_takes_record(script: str) -> None:
    shown = subprocess.run([sys.executable, str(BENCH / f"{script}.py"), "--help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    if shown.returncode != 0 and "ModuleNotFoundError" in shown.stderr:
        pytest.skip(f"{script}.py needs a module not installed here: {shown.stderr.splitlines()[-1]}")
    assert shown.returncode == 0, shown.stderr
    assert "--record" in shown.stdout and "--note" in shown.stdout


def test_the_bench_scripts_are_all_covered() -> None:
    scripts = {path.stem for path in BENCH.glob("*.py")} - {"charts", "results"}
    assert scripts == set(SCRIPTS)
