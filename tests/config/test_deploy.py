"""deploy/: the module loads, every option the manifests give `pystatefun` exists, and the admin API is
served safely: its token from a Secret, Prometheus scraping what needs no token (no Kubernetes cluster
here to apply them to)."""

from pathlib import Path

import yaml
from click.testing import CliRunner

from pystatefun.admin.api import PUBLIC_ROUTES, is_loopback
from pystatefun.cli import main
from pystatefun.config import KafkaEgress, KafkaIngress, load_module

DEPLOY = Path(__file__).parents[2] / "deploy"


def test_the_deploy_module_loads():
    module = load_module(DEPLOY / "module.yaml", env={"KAFKA_BOOTSTRAP": "kafka:9092"})
    assert [type(c) for c in module.ingresses] == [KafkaIngress]
    assert [type(c) for c in module.egresses] == [KafkaEgress]
    assert module.ingresses[0].bad_records.type == "dead-letter-topic"


def containers():
    for name in ("workers.yaml", "functions.yaml"):
        for document in yaml.safe_load_all((DEPLOY / name).read_text()):
            if document["kind"] == "Deployment":
                yield from document["spec"]["template"]["spec"]["containers"]


def test_every_option_in_the_manifests_exists():
    for container in containers():
        program, command, *args = container["command"]
        assert program == "pystatefun"
        help_text = CliRunner().invoke(main, [command, "--help"]).output
        for arg in args:
            if arg.startswith("--"):
                assert arg.split("=")[0] in help_text, f"{command} has no option {arg}"


def workers() -> dict:
    (deployment,) = [d for d in yaml.safe_load_all((DEPLOY / "workers.yaml").read_text()) if d["kind"] == "Deployment"]
    return deployment["spec"]["template"]


def test_the_workers_take_the_admin_token_from_a_secret():
    (container,) = workers()["spec"]["containers"]
    hosts = [arg.split("=", 1)[1] for arg in container["command"] if arg.startswith("--admin-host=")]
    assert hosts and not is_loopback(hosts[0])  # so a worker without the token would refuse to start
    (token_option,) = [p for p in main.commands["run"].params if p.name == "admin_token"]
    env = {variable["name"]: variable for variable in container["env"]}
    assert env[token_option.envvar]["valueFrom"]["secretKeyRef"] == {"name": "shop-admin", "key": "token"}
    assert not any("--admin-token" in arg for arg in container["command"])  # never on a command line


def test_prometheus_scrapes_a_route_that_needs_no_token():
    template = workers()
    annotations = template["metadata"]["annotations"]
    (container,) = template["spec"]["containers"]
    (admin,) = [p for p in container["ports"] if p["name"] == "admin"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == admin["containerPort"]
    assert annotations["prometheus.io/path"] in PUBLIC_ROUTES
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in PUBLIC_ROUTES
