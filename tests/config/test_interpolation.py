"""${VAR} and ${VAR:-default} substitution."""

import pytest

from pystatefun.config import load_module

ENDPOINT = """
kind: io.statefun.endpoints.v2/http
spec:
  functions: example/*
  urlPathTemplate: {url}
"""


def test_substitutes_from_env(files):
    module = files.load(ENDPOINT.format(url="http://${HOST}:${PORT}/${PATH_PART}"), env={"HOST": "fn", "PORT": "9000", "PATH_PART": "statefun"})
    assert module.endpoints[0].url_path_template == "http://fn:9000/statefun"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "http://localhost:8000/"),
        ({"HOST": ""}, "http://localhost:8000/"),  # like the shell's :-, an empty variable takes the default
        ({"HOST": "fn"}, "http://fn:8000/"),
    ],
)
def test_defaults(files, env, expected):
    module = files.load(ENDPOINT.format(url="http://${HOST:-localhost}:${PORT:-8000}/"), env=env)
    assert module.endpoints[0].url_path_template == expected


def test_substituted_numbers_and_durations_are_validated_like_literals(files):
    module = files.load(
        """
        kind: io.statefun.playground.v1/ingress
        spec:
          port: ${PORT}
          idempotency_key_ttl: ${TTL:-1 h}
        """,
        env={"PORT": "8095"},
    )
    assert module.ingresses[0].port == 8095
    assert module.ingresses[0].idempotency_key_ttl.total_seconds() == 3600
    problem = files.problem("kind: io.statefun.playground.v1/ingress\nspec:\n  port: ${PORT}\n", env={"PORT": "eighty"})
    assert "spec.port: expected a whole number, got the string 'eighty'" in problem


def test_an_unset_variable_is_named_once(files):
    problem = files.problem(
        """
        kind: io.statefun.playground.v1/ingress
        spec:
          port: ${INGRESS_PORT}
        """
    )
    assert problem.startswith(f"{files.folder / 'module.yaml'}, document 1 (io.statefun.playground.v1/ingress): spec.port: ")
    assert "environment variable INGRESS_PORT is not set (referenced in '${INGRESS_PORT}'): set it, or give a default with ${INGRESS_PORT:-default}" in problem
    assert problem.endswith("[line 4]")


def test_malformed_references_and_the_escape(files):
    error = files.error(ENDPOINT.format(url="'http://${HOST/x'") + "---\n" + ENDPOINT.replace("example", "other").format(url="http://${1BAD}/"))
    text = str(error)
    assert "document 1 (io.statefun.endpoints.v2/http): spec.urlPathTemplate: unterminated '${'" in text
    assert "document 2 (io.statefun.endpoints.v2/http): spec.urlPathTemplate: invalid variable reference '${1BAD}'" in text
    module = files.load("kind: io.statefun.playground.v1/egress\nspec:\n  port: 1\n  topics:\n    - $${NOT_A_VAR}\n")
    assert module.egresses[0].topics == ("${NOT_A_VAR}",)


def test_keys_are_not_substituted_and_lists_are(files):
    module = files.load(
        """
        kind: io.statefun.playground.v1/egress
        spec:
          port: 8091
          topics:
            - ${TOPIC}
            - fixed
        """,
        env={"TOPIC": "greetings"},
    )
    assert module.egresses[0].topics == ("greetings", "fixed")
    error = files.error("kind: io.statefun.playground.v1/ingress\nspec:\n  ${KEY}: 8090\n", env={"KEY": "port"})
    assert "spec.${KEY}: unknown key '${KEY}'" in str(error)


def test_env_defaults_to_os_environ(files, monkeypatch):
    monkeypatch.setenv("PYSTATEFUN_TEST_PORT", "8123")
    path = files.write("kind: io.statefun.playground.v1/ingress\nspec:\n  port: ${PYSTATEFUN_TEST_PORT}\n")
    assert load_module(path).ingresses[0].port == 8123
    assert load_module(path, env={"PYSTATEFUN_TEST_PORT": "8124"}).ingresses[0].port == 8124
