"""pystatefun.v1/embedded and the playground ingress/egress."""

from datetime import timedelta

import pytest

from pystatefun.config import EmbeddedFunctions, FunctionSelector, PlaygroundEgress, PlaygroundIngress


def test_embedded(files):
    module = files.load(
        """
        kind: pystatefun.v1/embedded
        spec:
          functions: example/*
          module: app.functions:registry.functions
        """
    )
    assert module.embedded == (
        EmbeddedFunctions(functions=FunctionSelector("example", None), module="app.functions:registry.functions", base_dir=files.folder),
    )
    assert module.embedded[0].kind == "pystatefun.v1/embedded"
    assert module.base_dir == files.folder


@pytest.mark.parametrize("reference", ["greeter", "greeter:", ":functions", "my-app:functions", "greeter:functions()", "a..b:c"])
def test_embedded_module_reference_shape(files, reference):
    problem = files.problem(
        f"""
        kind: pystatefun.v1/embedded
        spec:
          functions: example/greeter
          module: "{reference}"
        """
    )
    assert "document 1 (pystatefun.v1/embedded): spec.module: " in problem
    assert "is not a Python object reference: write 'package.module:attribute'" in problem


def test_embedded_requires_both_keys(files):
    error = files.error(
        """
        kind: pystatefun.v1/embedded
        spec:
          path: greeter.py
        """
    )
    text = str(error)
    assert "spec: missing required key 'functions', e.g. functions: example/*" in text
    assert "spec: missing required key 'module', e.g. module: greeter:functions" in text
    assert "spec.path: unknown key 'path' (allowed keys: functions, module)" in text


def test_playground_minimal(files):
    module = files.load(
        """
        kind: io.statefun.playground.v1/ingress
        spec:
          port: 8090
        ---
        kind: io.statefun.playground.v1/egress
        spec:
          port: 8091
          topics:
            - greetings
        """
    )
    (ingress,) = module.ingresses
    (egress,) = module.egresses
    assert ingress == PlaygroundIngress(port=8090)
    assert ingress.host == "127.0.0.1" and ingress.idempotency_key_ttl == timedelta(hours=24)
    assert ingress.id == "io.statefun.playground/ingress"
    assert egress == PlaygroundEgress(port=8091, topics=("greetings",))
    assert egress.host == "127.0.0.1" and egress.id == "io.statefun.playground/egress"
    assert module.ingress("io.statefun.playground/ingress") is ingress
    assert module.egress("io.statefun.playground/egress") is egress
    assert module.egress("nope/nope") is None


def test_playground_full(files):
    module = files.load(
        """
        kind: io.statefun.playground.v1/ingress
        spec:
          port: 0
          host: 0.0.0.0
          idempotency_key_ttl: 1 h
        ---
        kind: io.statefun.playground.v1/egress
        spec:
          port: "9000"
          host: ::1
          topics: [a, b]
        """
    )
    assert module.ingresses[0] == PlaygroundIngress(port=0, host="0.0.0.0", idempotency_key_ttl=timedelta(hours=1))
    assert module.egresses[0] == PlaygroundEgress(port=9000, host="::1", topics=("a", "b"))


def test_playground_problems(files):
    error = files.error(
        """
        kind: io.statefun.playground.v1/ingress
        spec:
          port: 70000
          idempotency_key_ttl: forever
        ---
        kind: io.statefun.playground.v1/egress
        spec:
          port: true
          topics: [a, a, ""]
          id: my/egress
        """
    )
    text = str(error)
    assert "document 1 (io.statefun.playground.v1/ingress): spec.port: 70000 is too large: the maximum is 65535" in text
    assert "document 1 (io.statefun.playground.v1/ingress): spec.idempotency_key_ttl: invalid duration 'forever'" in text
    assert "document 2 (io.statefun.playground.v1/egress): spec.port: expected a whole number, got the boolean true" in text
    assert "spec.topics[2]: expected a non-empty string" in text
    assert "spec.topics: 'a' listed more than once" in text
    assert "spec.id: key 'id' is not allowed here: the playground egress id is always io.statefun.playground/egress" in text


def test_playground_egress_needs_topics(files):
    problem = files.problem(
        """
        kind: io.statefun.playground.v1/egress
        spec:
          port: 8091
          topics: []
        """
    )
    assert "spec.topics: must list at least one item, e.g. [greetings]" in problem


def test_playground_servers_on_one_port_clash(files):
    problem = files.problem(
        """
        kind: io.statefun.playground.v1/ingress
        spec:
          port: 8090
        ---
        kind: io.statefun.playground.v1/egress
        spec:
          port: 8090
          topics: [out]
        """
    )
    assert "document 2 (io.statefun.playground.v1/egress): spec.port: port 8090 on 127.0.0.1 is already used by document 1 (io.statefun.playground.v1/ingress)" in problem


def test_two_playground_ingresses_have_the_same_id(files):
    problem = files.problem(
        """
        kind: io.statefun.playground.v1/ingress
        spec:
          port: 8090
        ---
        kind: io.statefun.playground.v1/ingress
        spec:
          port: 8092
        """
    )
    assert "document 2 (io.statefun.playground.v1/ingress): spec: the ingress id 'io.statefun.playground/ingress' is already used by document 1" in problem
