"""Draws the charts of docs/benchmarks.md from docs/benchmarks/results.json.

results.json is a list of measured runs, one object each: ``bench`` (the script in bench/), ``date``,
``system`` (what ran: pystatefun in some shape, or a peer), ``metric`` (what was measured, with its unit),
``value``, and an optional ``note``. A bench script run with ``--record`` (and ``--note TEXT`` if the run
needs one) appends the numbers it printed, dated today, and redraws its charts with ``draw`` (through
bench/results.py). To redraw them all:

    .venv/bin/python bench/charts.py

For every bench it writes ``docs/benchmarks/<bench>.svg``: the runs of its latest date, one panel per
metric, one bar per system (the mean of its runs, a line from the lowest to the highest). A bench measured
on more than one date also gets ``<bench>-history.svg``: per metric and system, the mean of each date.
The SVGs carry no timestamp and fixed ids, so drawing the same data again changes no file. With
$PYSTATEFUN_BENCH_RESULTS set, the runs come from that file and the charts go next to it.
"""

import collections
import json
import pathlib
import statistics

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)

from results import results_path  # noqa: E402  (bench/results.py)

HERE = pathlib.Path(__file__).resolve().parent
plt.rcParams["svg.hashsalt"] = "pystatefun-benchmarks"
plt.rcParams["font.size"] = 9


def load(results: pathlib.Path) -> dict[str, list[dict]]:
    runs_by_bench = collections.defaultdict(list)
    for run in json.loads(results.read_text(encoding="utf-8")):
        runs_by_bench[run["bench"]].append(run)
    return runs_by_bench


def grouped(runs: list[dict], key: str) -> dict[str, dict[str, list[float]]]:
    """metric -> (run[key]) -> values, in the order the runs are listed."""
    groups: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        groups.setdefault(run["metric"], {}).setdefault(run[key], []).append(run["value"])
    return groups


def save(figure, path: pathlib.Path) -> None:
    figure.tight_layout()
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)


def latest_chart(bench: str, runs: list[dict], out: pathlib.Path) -> pathlib.Path:
    date = max(run["date"] for run in runs)
    metrics = grouped([run for run in runs if run["date"] == date], "system")
    figure, axes = plt.subplots(len(metrics), 1, figsize=(8, 1.1 + 0.45 * sum(map(len, metrics.values()))), squeeze=False)
    for axis, (metric, by_system) in zip(axes[:, 0], metrics.items()):
        systems = list(by_system)
        means = [statistics.mean(by_system[system]) for system in systems]
        low = [mean - min(by_system[system]) for mean, system in zip(means, systems)]
        high = [max(by_system[system]) - mean for mean, system in zip(means, systems)]
        axis.barh(systems, means, xerr=[low, high], color="#4c72b0", ecolor="#333333", capsize=3)
        axis.invert_yaxis()
        axis.set_xlabel(metric)
        for y, system in enumerate(systems):
            values = by_system[system]
            label = f"{min(values):,.6g}" if len(values) == 1 else f"{min(values):,.6g}-{max(values):,.6g}"
            axis.annotate(label, (max(values), y), xytext=(4, 0), textcoords="offset points", va="center")
        axis.margins(x=0.25)
    axes[0, 0].set_title(f"{bench} ({date})")
    path = out / f"{bench}.svg"
    save(figure, path)
    return path


def history_chart(bench: str, runs: list[dict], out: pathlib.Path) -> pathlib.Path | None:
    dates = sorted({run["date"] for run in runs})
    metrics = {metric: systems for metric, systems in grouped(runs, "system").items()
               if len({run["date"] for run in runs if run["metric"] == metric}) > 1}
    if len(dates) < 2 or not metrics:
        return None
    figure, axes = plt.subplots(len(metrics), 1, figsize=(7, 3 * len(metrics)), squeeze=False)
    for axis, metric in zip(axes[:, 0], metrics):
        for system in metrics[metric]:
            by_date = collections.defaultdict(list)
            for run in runs:
                if run["metric"] == metric and run["system"] == system:
                    by_date[run["date"]].append(run["value"])
            days = sorted(by_date)
            axis.plot(days, [statistics.mean(by_date[day]) for day in days], marker="o", label=system)
        axis.set_ylabel(metric)
        axis.legend(fontsize=8)
    axes[0, 0].set_title(f"{bench}: mean of each date's runs")
    path = out / f"{bench}-history.svg"
    save(figure, path)
    return path


def draw(results: pathlib.Path, benches: list[str] | None = None) -> list[pathlib.Path]:
    """Draws the charts of ``benches`` (all by default) from the runs in ``results``, next to it; returns
    the files written."""
    written = []
    for bench, runs in sorted(load(results).items()):
        if benches is None or bench in benches:
            written += [path for path in (latest_chart(bench, runs, results.parent),
                                          history_chart(bench, runs, results.parent)) if path is not None]
    return written


def main() -> None:
    for path in draw(results_path()):
        print(path.relative_to(HERE.parent) if path.is_relative_to(HERE.parent) else path)


if __name__ == "__main__":
    main()
