"""Limits of a module file: its size, its YAML aliases and nesting, its URL templates and its numbers.

Each limit is refused with the usual problem naming the file (and the document and key where there is one),
quickly, before anything is expanded or used.
"""

from __future__ import annotations

import pytest

from pystatefun.config import ModuleConfigError, load_module
from pystatefun.config.source import read_documents

ENDPOINT = """\
kind: io.statefun.endpoints.v2/http
spec:
  functions: example/*
  urlPathTemplate: http://functions:8000/{function.name}
"""

# the classic "billion laughs": 9 lines that expand to 9^9 strings
BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def nested(depth: int) -> str:
    """An endpoint document whose ``x`` holds lists nested so that the document is ``depth`` deep."""
    inner = depth - 2  # the document's mapping and its spec mapping
    return ENDPOINT + "  x: " + "[" * inner + "1" + "]" * inner + "\n"


# -- YAML -------------------------------------------------------------------------------------------------


def test_a_billion_laughs_alias_bomb_is_refused_at_the_51st_alias_to_a_collection(files):
    problem = files.problem(BILLION_LAUGHS)
    # 9 in line 2, ... the 51st alias is the 6th of line 7 (column 23)
    assert problem == (
        f"{files.folder / 'module.yaml'}: YAML beyond pystatefun's limits at line 7, column 23: more than 50 aliases "
        "to mappings or lists in one document (StateFun's YAML parser refuses them too): write the values out, or use fewer anchors"
    )


def test_fifty_aliases_to_collections_and_any_number_to_scalars_are_allowed():
    collections = "\n".join("  - *defaults" for _ in range(50))
    scalars = "\n".join("  - *name" for _ in range(200))
    (document,) = read_documents(f"d: &defaults {{a: 1}}\ns: &name x\nmany:\n{collections}\nnames:\n{scalars}\n")
    assert document.data["many"] == [{"a": 1}] * 50 and document.data["names"] == ["x"] * 200


def test_aliases_that_double_a_value_fifty_times_are_refused_by_their_expanded_size(files):
    # 25 levels of two aliases each: 50 aliases, SnakeYAML's limit, but 2^26 values once expanded
    lines = ["a0: &a0 [1, 2]"] + [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 26)]
    problem = files.problem("\n".join(lines) + "\n")
    assert problem.endswith("YAML beyond pystatefun's limits at line 1, column 1: aliases expand this document "
                            "to more than 1,000,000 values: write out only what is needed")


def test_an_alias_inside_its_own_anchor_is_refused(files):
    problem = files.problem(ENDPOINT.replace("spec:", "spec: &spec") + "  x: [*spec]\n")
    assert problem.endswith("at line 2, column 7: an alias inside its own anchor makes an endless value: refer to it from outside")


def test_nesting_is_allowed_50_deep_and_refused_deeper(files):
    with pytest.raises(ModuleConfigError) as caught:  # 50 deep is read: only the unknown key is reported
        files.load(nested(50))
    assert "unknown key 'x'" in str(caught.value)
    assert files.problem(nested(51)).endswith("mappings and lists nested more than 50 deep: flatten the document")
    # aliases can nest what is shallow where it was written: the expanded depth counts
    deep_by_alias = "x: &x " + "[" * 30 + "1" + "]" * 30 + "\ny: " + "[" * 30 + "*x" + "]" * 30 + "\n"
    assert files.problem(deep_by_alias).endswith("aliases nest mappings and lists more than 50 deep: write the values out")


def test_a_module_file_larger_than_16_mib_is_refused_without_reading_it_all(files):
    path = files.write(ENDPOINT + "# " + "x" * (16 * 2**20) + "\n")
    with pytest.raises(ModuleConfigError) as caught:
        load_module(path, env={})
    assert str(caught.value) == f"{path}: the module file is larger than 16 MiB: split it or remove what is not needed"
    with pytest.raises(ModuleConfigError, match="larger than 16 MiB"):
        load_module("/dev/zero", env={})  # endless: read no further than the limit


# -- URL templates ------------------------------------------------------------------------------------------


def endpoint_with(url: str) -> str:
    """An endpoint document whose urlPathTemplate is ``url`` as a double-quoted YAML string (escapes work)."""
    escaped = "".join(f"\\x{ord(c):02x}" if c in '"\\' or not c.isprintable() else c for c in url)
    return ENDPOINT.replace("http://functions:8000/{function.name}", f'"{escaped}"')


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://functions:8000/a b", "a space at position 24"),
        ("http://functions:8000/{function.name}\r\nX-Injected: 1", "a carriage return (CR) at position 38"),
        ("http://functions:8000/a\nb", "a line feed (LF) at position 24"),
        ("http://functions:8000/a\tb", "a tab at position 24"),
        ("http://functions:8000/\x7f", "the control character U+007F at position 23"),
        ("http://functions:8000/grüße", "the character 'ü' at position 25"),
        ('http://functions:8000/"x"', "the character '\"' at position 23"),
        ("http://functions:8000/a|b", "the character '|' at position 24"),
    ],
    ids=["space", "crlf", "lf", "tab", "del", "non-ascii", "quote", "pipe"],
)
def test_a_url_template_with_a_character_not_allowed_in_a_uri_is_refused_where_it_is(files, url, message):
    problem = files.problem(endpoint_with(url))
    assert problem == (
        f"{files.folder / 'module.yaml'}, document 1 (io.statefun.endpoints.v2/http): spec.urlPathTemplate: {url!r} is not a "
        f"valid URL: {message} is not allowed in a URL; percent-encode it (e.g. %20 for a space) or remove it [line 4]"
    )


def test_a_percent_sign_must_start_a_percent_encoding(files):
    problem = files.problem(endpoint_with("http://functions:8000/100%"))
    assert problem.endswith("'http://functions:8000/100%': '%' at position 26 does not start a percent-encoding like %20: "
                            "write a literal '%' as %25 [line 4]")


def test_a_unix_socket_url_has_no_host(files):
    problem = files.problem(endpoint_with("http+unix://functions/run/fn.sock/statefun"))
    assert "a http+unix URL has no host; write the socket file as the path" in problem


@pytest.mark.parametrize(
    "url",
    [
        "http://functions:8000/{function.name}",
        "https://fn.example.com/{function.name}/v1?key=a%20b&x=(1);y=*#frag",
        "http://[::1]:8000/statefun",
        "http://user:pw@functions/~statefun/-._",
        "http+unix:///run/fn/functions.sock/{function.name}",
        "https+unix:///run/functions.sock/statefun?x=1",
    ],
)
def test_urls_as_rfc_3986_allows_them_keep_working(files, url):
    (endpoint,) = files.load(endpoint_with(url)).endpoints
    assert endpoint.url_path_template == url
    assert endpoint.url_for("greeter") == url.replace("{function.name}", "greeter")


# -- numbers --------------------------------------------------------------------------------------------------

KAFKA_EGRESS = """\
kind: io.statefun.kafka.v1/egress
spec:
  id: example/out
  address: kafka:9092
  deliverySemantic:
    type: exactly-once
"""

# (document, key path as written under spec, YAML key, largest allowed value, what the module holds for it)
NUMBERS = [
    (ENDPOINT, "maxNumBatchRequests", "maxNumBatchRequests", "100000", lambda m: m.endpoints[0].max_num_batch_requests),
    (ENDPOINT + "  transport:\n", "transport.pool_size", "    pool_size", "65536", lambda m: m.endpoints[0].transport.pool_size),
    (ENDPOINT + "  transport:\n", "transport.payload_max_bytes", "    payload_max_bytes", "1073741824",
     lambda m: m.endpoints[0].transport.payload_max_bytes),
    (ENDPOINT + "  retry:\n", "retry.max_attempts", "    max_attempts", "10000", lambda m: m.endpoints[0].retry.max_attempts),
    ("kind: io.statefun.kinesis.v1/egress\nspec:\n  id: example/out\n", "maxOutstandingRecords", "maxOutstandingRecords", "100000",
     lambda m: m.egresses[0].max_outstanding_records),
    (KAFKA_EGRESS, "deliverySemantic.transactionTimeoutMillis", "    transactionTimeoutMillis", "86400000",
     lambda m: m.egresses[0].delivery_semantic.transaction_timeout.total_seconds() * 1000),
]


def document_with(document: str, key: str, value: str) -> str:
    indent = "  " if not key.startswith(" ") else ""
    return document + f"{indent}{key}: {value}\n"


@pytest.mark.parametrize("document, path, key, maximum, read", NUMBERS, ids=[n[1] for n in NUMBERS])
def test_every_number_is_taken_up_to_its_maximum_and_refused_beyond_it_naming_key_and_maximum(files, document, path, key, maximum, read):
    assert read(files.load(document_with(document, key, maximum))) == int(maximum)
    problem = files.problem(document_with(document, key, str(int(maximum) + 1)))
    assert f"spec.{path}: {int(maximum) + 1} is too large: the maximum is {maximum}" in problem
    huge = files.problem(document_with(document, key, "100000000000000000000"))  # 1e20 as an integer: refused, not "off"
    assert f"spec.{path}: 100000000000000000000 is too large: the maximum is {maximum}" in huge


@pytest.mark.parametrize("value, described", [("1e20", "the string '1e20'"), ("1.5", "the number 1.5"), ("1.0e+20", "the number 1e+20"),
                                               (".inf", "the number inf"), ("true", "the boolean true")])
def test_a_number_that_is_not_a_whole_number_is_refused(files, value, described):
    problem = files.problem(document_with(ENDPOINT + "  transport:\n", "    payload_max_bytes", value))
    assert problem.endswith(f"spec.transport.payload_max_bytes: expected a whole number, got {described} [line 6]")


def test_a_negative_batch_size_still_means_no_limit_as_in_statefun_within_a_java_int(files):
    assert files.load(document_with(ENDPOINT, "maxNumBatchRequests", "-1")).endpoints[0].max_num_batch_requests == -1
    problem = files.problem(document_with(ENDPOINT, "maxNumBatchRequests", "-2147483649"))
    assert "spec.maxNumBatchRequests: -2147483649 is too small: use a number from -2147483648 to 100000" in problem


DURATIONS = [
    (ENDPOINT + "  transport:\n", "transport.call", "    call", "1 d"),
    (ENDPOINT + "  transport:\n", "transport.connect", "    connect", "1 d"),
    (ENDPOINT + "  transport:\n", "transport.pool_ttl", "    pool_ttl", "1 d"),
    (ENDPOINT + "  transport:\n    timeouts:\n", "transport.timeouts.call", "      call", "1 d"),
    (ENDPOINT + "  transport:\n    type: io.statefun.transports.v1/okhttp\n    timeouts:\n", "transport.timeouts.call", "      call", "1 d"),
    (ENDPOINT + "  retry:\n    max_backoff: 1d\n", "retry.initial_backoff", "    initial_backoff", "1 d"),
    (ENDPOINT + "  retry:\n", "retry.max_backoff", "    max_backoff", "1 d"),
    ("kind: io.statefun.playground.v1/ingress\nspec:\n  port: 8090\n", "idempotency_key_ttl", "idempotency_key_ttl", "365 d"),
    (KAFKA_EGRESS, "deliverySemantic.transactionTimeout", "    transactionTimeout", "1 d"),
]


@pytest.mark.parametrize("document, path, key, maximum", DURATIONS, ids=[f"{d[1]}-{i}" for i, d in enumerate(DURATIONS)])
def test_every_duration_is_taken_up_to_its_maximum_and_refused_beyond_it(files, document, path, key, maximum):
    files.load(document_with(document, key, f"'{maximum}'"))
    days = int(maximum.split()[0])
    problem = files.problem(document_with(document, key, f"'{days * 24 * 60 + 1} min'"))
    assert f"spec.{path}: {days * 24 * 60 + 1} min is longer than the maximum, {maximum} [line" in problem
