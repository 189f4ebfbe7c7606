"""GET /metrics on the admin API: the StateFun metric set per function type, commits, ingress, egress."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pystatefun import StringType

from .conftest import EXAMPLES, our_server
from .processes import Runtime, request

APP = Path(__file__).parent / "apps" / "counter"


def scrape(runtime: Runtime) -> dict[tuple[str, tuple], float]:
    reply = request(runtime.admin_port, "GET", "/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_counts_per_function_type_commits_ingress_parked_and_dead_letters(tmp_path):
    runtime = Runtime(APP / "module.yaml", tmp_path / "data").start()
    try:
        for n in range(5):
            body = StringType.serializer().serialize(f"m{n}")
            assert runtime.send("/crash/counter/k", "io.statefun.types/string", body).status == 202
        poison = StringType.serializer().serialize("poison")
        assert runtime.send("/crash/fragile/p", "io.statefun.types/string", poison).status == 202
        assert runtime.send("/crash/nobody/x", "io.statefun.types/string", poison).status == 404
        for _ in range(5):  # once these are out, the counts are committed too
            assert runtime.take("totals", wait=5).status == 200
        samples = scrape(runtime)
    finally:
        runtime.stop()
    counter = (("function_type", "crash/counter"),)
    assert samples["pystatefun_function_in_total", counter] == 5
    assert samples["pystatefun_function_out_local_total", counter] == 5  # one to crash/total each
    assert samples["pystatefun_function_out_egress_total", counter] == 5
    assert samples["pystatefun_function_in_total", (("function_type", "crash/total"),)] == 5
    assert samples["pystatefun_function_parked_addresses", (("function_type", "crash/fragile"),)] == 1
    assert samples["pystatefun_ingress_responses_total", (("status", "202"),)] == 6
    assert samples["pystatefun_ingress_responses_total", (("status", "404"),)] == 1
    assert samples["pystatefun_epochs_committed_total", ()] >= 1
    assert samples["pystatefun_epoch_commit_latency_seconds_count", ()] >= 1
    assert samples["pystatefun_egress_records", (("egress", "io.statefun.playground/egress"), ("topic", "counts"))] == 5


def test_remote_calls_are_timed_per_function_type(tmp_path):
    greeter = EXAMPLES / "greeter"
    server = our_server(greeter, "greeter:functions").start()
    runtime = Runtime(greeter / "module-remote.yaml", tmp_path / "data", env={"FUNCTIONS_PORT": str(server.port)}).start()
    try:
        assert runtime.send("/example/person/Bob", "example/GreetRequest", b'{"name": "Bob"}').status == 202
        assert runtime.take("greetings", wait=10).status == 200
        samples = scrape(runtime)
    finally:
        runtime.stop()
        server.stop()
    person = (("function_type", "example/person"),)
    assert samples["pystatefun_function_remote_invocation_latency_seconds_count", person] >= 1
    assert samples.get(("pystatefun_function_remote_invocation_failures_total", person), 0) == 0
