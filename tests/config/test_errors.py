"""How problems are reported: file, document, kind, key path, line; all of them at once."""

import pytest

from pystatefun.config import ConfigProblem, ModuleConfigError, load_module


def test_the_message_names_file_document_kind_path_and_line(files):
    error = files.error(
        """
        kind: io.statefun.playground.v1/ingress
        spec:
          port: 8090
        ---
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example/*
          urlPathTemplate: http://functions:8000/
          transport:
            call: 2 fortnights
        """
    )
    (problem,) = error.problems
    assert problem == ConfigProblem(
        file=str(files.folder / "module.yaml"),
        message="invalid duration '2 fortnights' (use e.g. '2 min', '30s', '500ms')",
        document=2,
        kind="io.statefun.endpoints.v2/http",
        path="spec.transport.call",
        line=11,  # the test text starts with an empty line
    )
    assert str(error) == (
        f"{files.folder / 'module.yaml'}, document 2 (io.statefun.endpoints.v2/http): spec.transport.call: "
        "invalid duration '2 fortnights' (use e.g. '2 min', '30s', '500ms') [line 11]"
    )
    assert isinstance(error, ValueError)


def test_a_relative_path_is_named_as_given(files, monkeypatch):
    files.write("kind: io.statefun.playground.v1/ingress\nspec:\n  port: x\n")
    monkeypatch.chdir(files.folder)
    with pytest.raises(ModuleConfigError) as caught:
        load_module("module.yaml")
    assert str(caught.value).startswith("module.yaml, document 1 (io.statefun.playground.v1/ingress): spec.port: expected a whole number")


def test_all_problems_of_a_file_are_collected_in_document_order(files):
    error = files.error(
        """
        kind: io.statefun.endpoints.v2/http
        spec:
          functions: example
          urlPathTemplate: http://functions:8000/
        ---
        kind: io.statefun.kafka.v1/egress
        spec:
          adress: kafka:9092
        ---
        kind: io.statefun.playground.v1/ingress
        spec:
          port: 8090
          port: 8091
          host: ${MISSING}
        """
    )
    assert [(p.document, p.path) for p in error.problems] == [
        (1, "spec.functions"),
        (2, "spec"),  # missing id
        (2, "spec.adress"),
        (2, "spec"),  # no bootstrap servers
        (3, "spec.port"),  # duplicate key
        (3, "spec.host"),  # unset variable
    ]
    assert str(error).startswith(f"6 problems in {files.folder / 'module.yaml'}:\n  - ")
    assert "spec.adress: unknown key 'adress' (did you mean 'address'? allowed keys: id, address, deliverySemantic, properties)" in str(error)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: io.statefun.endpoint.v2/http\nspec: {}\n", "kind: unknown kind 'io.statefun.endpoint.v2/http' (did you mean 'io.statefun.endpoints.v2/http'? known kinds: io.statefun.endpoints.v2/http, "),
        ("kind: io.statefun.playground.v1/ingress\n", "document 1 (io.statefun.playground.v1/ingress): missing required key 'spec'"),
        ("spec: {port: 8090}\n", "document 1: missing required key 'kind', e.g. kind: io.statefun.endpoints.v2/http"),
        ("kind: [a]\nspec: {}\n", "document 1: kind: expected a kind name, got a list"),
        ("- kind: io.statefun.playground.v1/ingress\n", "document 1: expected a component: a mapping with 'kind' and 'spec', got a list"),
        ("kind: io.statefun.playground.v1/ingress\nspec: [8090]\n", "spec: expected a mapping of keys to values, got a list"),
        ("kind: io.statefun.playground.v1/ingress\nspec: {port: 8090}\nmeta: {}\n", "document 1 (io.statefun.playground.v1/ingress): meta: unknown key 'meta' (allowed keys: kind, spec)"),
        ("kind: io.statefun.playground.v1/ingress\nspec: {port: }\n", "spec: missing required key 'port' (it is null), e.g. port: 8090"),
        ("kind: io.statefun.playground.v1/egress\nspec: {port: 1, topics: [true]}\n", "spec.topics[0]: expected a string, got the boolean true (quote it if it is meant as a string)"),
    ],
)
def test_component_structure_problems(files, text, message):
    assert message in files.problem(text)


def test_settings_not_indented_under_spec_say_so(files):
    text = str(files.error("kind: io.statefun.playground.v1/ingress\nspec:\nport: 8090\n"))
    assert "'spec' is empty: its settings belong under it, each indented by two spaces [line 1]" in text
    assert "port: unknown key 'port' (allowed keys: kind, spec) [line 3]" in text


def test_malformed_yaml_names_line_and_column(files):
    problem = files.problem("kind: io.statefun.playground.v1/ingress\nspec:\n  port: 8090\n   host: x\n")
    assert problem.startswith(f"{files.folder / 'module.yaml'}: malformed YAML at line 4, column 8: ")
    assert "mapping values are not allowed here" in problem
    problem = files.problem("kind: [unclosed\n")
    assert "malformed YAML at line 2" in problem


def test_unreadable_and_empty_files(files, tmp_path):
    with pytest.raises(ModuleConfigError, match=r"nope.yaml: cannot read the module file: No such file or directory"):
        load_module(tmp_path / "nope.yaml")
    assert "the file has no components" in files.problem("# nothing here\n")
    assert "the file has no components" in files.problem("---\n---\n")


def test_null_documents_are_skipped_and_numbering_follows_the_file(files):
    error = files.error(
        """
        ---
        kind: io.statefun.playground.v1/ingress
        spec: {port: 8090}
        ---
        ---
        kind: io.statefun.playground.v1/egress
        spec: {port: 8091, topics: []}
        ---
        """
    )
    (problem,) = error.problems
    assert problem.document == 3  # the empty document between the two `---` counts
    module = files.load("kind: io.statefun.playground.v1/ingress\nspec: {port: 8090}\n---\n---\n")
    assert module.ingresses[0].port == 8090


def test_yaml_booleans_and_dates_are_read_like_statefun_reads_them(files):
    # `on`, `no`, `yes` stay strings (YAML 1.2 booleans), dates stay strings
    module = files.load(
        """
        kind: io.statefun.playground.v1/egress
        spec:
          port: 8091
          topics: [on, no, yes, 2020-01-01]
        """
    )
    assert module.egresses[0].topics == ("on", "no", "yes", "2020-01-01")


def test_anchors_and_merge_keys_work_within_a_document(files):
    module = files.load(
        """
        version: "3.0"
        module:
          meta: {type: remote}
          spec:
            endpoints:
              - endpoint:
                  meta: {kind: http}
                  spec: &common
                    functions: a/*
                    urlPathTemplate: http://functions:8000/
                    timeouts: {call: 30s}
              - endpoint:
                  meta: {kind: http}
                  spec:
                    <<: *common
                    functions: b/*
        """
    )
    first, second = module.endpoints
    assert first.transport == second.transport and first.transport.call.total_seconds() == 30
    assert (first.functions.namespace, second.functions.namespace) == ("a", "b")
    error = files.error(
        """
        version: "3.0"
        module:
          meta: {type: remote}
          spec:
            endpoints:
              - endpoint:
                  meta: {kind: http}
                  spec: &common
                    functions: a/*
                    urlPathTemplate: http://functions:8000/
                    timeout: {call: 30s}
              - endpoint:
                  meta: {kind: http}
                  spec:
                    <<: *common
                    functions: b/*
        """
    )
    # reported for each use of the anchored mapping, at the line where it is written
    assert [(p.path, p.line) for p in error.problems] == [
        ("module.spec.endpoints[0].endpoint.spec.timeout", 12),
        ("module.spec.endpoints[1].endpoint.spec.timeout", 12),
    ]
    assert "unknown key 'timeout' (did you mean 'timeouts'?" in str(error)


def test_a_byte_order_mark_is_tolerated(files):
    path = files.folder / "bom.yaml"
    path.write_bytes("\ufeffkind: io.statefun.playground.v1/ingress\nspec: {port: 8090}\n".encode())
    assert load_module(path).ingresses[0].port == 8090
