"""The module as a whole: binding resolution and the checks across documents."""

from pathlib import Path

from pystatefun.config import EmbeddedFunctions, FunctionSelector, HttpEndpoint, Module

BINDINGS = """
kind: io.statefun.endpoints.v2/http
spec:
  functions: example/*
  urlPathTemplate: http://namespace:8000/
---
kind: io.statefun.endpoints.v2/http
spec:
  functions: example/special
  urlPathTemplate: http://special:8000/
---
kind: pystatefun.v1/embedded
spec:
  functions: local/*
  module: app:functions
---
kind: pystatefun.v1/embedded
spec:
  functions: example/embedded
  module: app:functions
"""


def test_exact_binding_wins_over_namespace_binding(files):
    module = files.load(BINDINGS)
    assert module.binding_for("example/special").url_path_template == "http://special:8000/"
    assert module.binding_for("example/other").url_path_template == "http://namespace:8000/"
    assert module.binding_for("example/embedded") == module.embedded[1]
    assert module.binding_for("local/anything") == module.embedded[0]
    assert module.binding_for("unknown/thing") is None
    assert module.binding_for("examples/special") is None
    assert [b.functions.name for b in module.bindings] == [None, "embedded", None, "special"]


def test_precedence_does_not_depend_on_file_order():
    exact = HttpEndpoint(functions=FunctionSelector("ns", "f"), url_path_template="http://exact/")
    wildcard = EmbeddedFunctions(functions=FunctionSelector("ns", None), module="m:f", base_dir=Path("."))
    module = Module(path=Path("module.yaml"), endpoints=(exact,), embedded=(wildcard,))
    assert module.binding_for("ns/f") is exact
    assert module.binding_for("ns/g") is wildcard


def test_components_keep_file_order_per_list(files):
    module = files.load(BINDINGS)
    assert [e.url_path_template for e in module.endpoints] == ["http://namespace:8000/", "http://special:8000/"]
    assert module.path == files.folder / "module.yaml"


def test_a_namespace_bound_twice_names_both_documents(files):
    problem = files.problem(
        BINDINGS
        + """
---
kind: io.statefun.endpoints.v1/http
spec:
  functions: local/*
  urlPathTemplate: http://other:8000/
"""
    )
    assert (
        "document 5 (io.statefun.endpoints.v1/http): spec.functions: the namespace 'local/*' is already bound by "
        "document 3 (pystatefun.v1/embedded): bind each function type or namespace once"
    ) in problem


def test_a_function_type_bound_twice_names_both_documents(files):
    problem = files.problem(
        BINDINGS
        + """
---
kind: pystatefun.v1/embedded
spec:
  functions: example/special
  module: other:functions
"""
    )
    assert "document 5 (pystatefun.v1/embedded): spec.functions: the function type 'example/special' is already bound by document 2 (io.statefun.endpoints.v2/http)" in problem


def test_duplicate_ingress_and_egress_ids(files):
    error = files.error(
        """
        kind: io.statefun.endpoints.v2/http
        spec: {functions: com.example/*, urlPathTemplate: "http://fn/"}
        ---
        kind: io.statefun.kafka.v1/ingress
        spec:
          id: com.example/in
          address: kafka:9092
          consumerGroupId: g
          topics: [{topic: a, valueType: com.example/A, targets: [com.example/f]}]
        ---
        kind: io.statefun.kinesis.v1/ingress
        spec:
          id: com.example/in
          streams: [{stream: a, valueType: com.example/A, targets: [com.example/f]}]
        ---
        kind: io.statefun.kafka.v1/egress
        spec: {id: com.example/out, address: "kafka:9092"}
        ---
        kind: io.statefun.kinesis.v1/egress
        spec: {id: com.example/out}
        ---
        kind: io.statefun.kinesis.v1/egress
        spec: {id: com.example/in}
        """
    )
    text = str(error)
    assert len(error.problems) == 2  # an ingress and an egress may share an id
    assert "document 3 (io.statefun.kinesis.v1/ingress): spec.id: the ingress id 'com.example/in' is already used by document 2 (io.statefun.kafka.v1/ingress): give each ingress its own id" in text
    assert "document 5 (io.statefun.kinesis.v1/egress): spec.id: the egress id 'com.example/out' is already used by document 4 (io.statefun.kafka.v1/egress)" in text


def test_ingress_targets_must_be_served(files):
    problem = files.problem(
        """
        kind: pystatefun.v1/embedded
        spec: {functions: com.example/greeter, module: "app:functions"}
        ---
        kind: io.statefun.kafka.v1/ingress
        spec:
          id: com.example/in
          address: kafka:9092
          consumerGroupId: g
          topics:
            - topic: a
              valueType: com.example/A
              targets: [com.example/greeter, com.example/greter]
        """
    )
    assert (
        "document 2 (io.statefun.kafka.v1/ingress): spec.topics[0].targets[1]: no endpoint or embedded module in this file "
        "serves the function type 'com.example/greter': bind it (e.g. functions: com.example/*) or fix the name"
    ) in problem
