"""The Grafana dashboard in deploy/grafana/ queries only metrics a real application exposes: every
``pystatefun_*`` name in its PromQL is scraped from ``/metrics`` of an embedded runtime (Kafka ingress,
remote counter) and of a Kafka backend worker (its egress, partitions). A metric renamed or dropped in
admin/metrics.py fails here instead of leaving an empty panel."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from e2e.conftest import our_server
from e2e.processes import Runtime

from .harness import APPS, Worker, counter_module, counts_by_key, create_topics, produce, read_all, unique

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "pystatefun-dashboard.json"


def queried_metrics(dashboard: dict) -> set[str]:
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())]
    expressions += [variable["definition"] for variable in dashboard["templating"]["list"] if "definition" in variable]
    return {name for expression in expressions for name in re.findall(r"\bpystatefun_[a-z_]+", expression)}


def exposed_samples(metrics_text: str) -> set[str]:
    """Every sample name a scrape can hold: the families' names with their types' suffixes."""
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", metrics_text, re.MULTILINE):
        if kind == "counter":  # prometheus_client names the family with its _total already
            names.add(family if family.endswith("_total") else family + "_total")
        elif kind == "histogram":
            names.update(family + suffix for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family)
    return names


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def test_every_metric_the_dashboard_queries_is_exposed(tmp_path, kafka_bootstrap):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "pystatefun" and dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["type"] == "row" or panel["targets"], panel["title"]
    wanted = queried_metrics(dashboard)
    assert {"pystatefun_function_in_total", "pystatefun_kafka_partition_lag",
            "pystatefun_epoch_commit_latency_seconds_bucket"} <= wanted

    exposed: set[str] = set()
    source, out = unique("in"), unique("out")
    create_topics(kafka_bootstrap, source, out)
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "counter.py").write_text((APPS / "counter.py").read_text())
    server = our_server(tmp_path / "functions", "counter:functions").start()
    runtime = None
    try:
        url = f"http://127.0.0.1:{server.port}/statefun"
        runtime = Runtime(counter_module(tmp_path / "embedded", kafka_bootstrap, source, remote_url=url, playground=True),
                          tmp_path / "data").start()
        produce(kafka_bootstrap, source, [(b"a", out.encode()), (b"b", out.encode())])
        assert counts_by_key(read_all(kafka_bootstrap, out, 2)) == {"a": [1], "b": [1]}
        exposed |= exposed_samples(scrape(runtime.admin_port))
    finally:
        if runtime is not None:
            runtime.stop()
        server.stop()

    source2, out2 = unique("in"), unique("out")
    create_topics(kafka_bootstrap, source2, out2)
    worker = Worker(counter_module(tmp_path / "worker", kafka_bootstrap, source2), kafka_bootstrap, unique("app"), "w0",
                    tmp_path / "w0.log").start()
    try:
        produce(kafka_bootstrap, source2, [(b"a", out2.encode())])
        assert counts_by_key(read_all(kafka_bootstrap, out2, 1)) == {"a": [1]}
        exposed |= exposed_samples(scrape(worker.admin_port))
    finally:
        worker.stop()
    assert wanted - exposed == set(), f"the dashboard queries metrics no application exposes: {sorted(wanted - exposed)}"
