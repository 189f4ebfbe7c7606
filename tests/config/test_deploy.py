"""deploy/: the module loads, and every option the manifests give `pystatefun` exists (no Kubernetes
cluster here to apply them to)."""

from pathlib import Path

import yaml
from click.testing import CliRunner

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
