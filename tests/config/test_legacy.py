"""The legacy single-document format (version: "3.0")."""

from datetime import timedelta

import pytest

from pystatefun.config import KafkaEgress, KafkaIngress, TransportSpec

LEGACY = """
version: "3.0"
module:
  meta:
    type: remote
  spec:
    endpoints:
      - endpoint:
          meta:
            kind: http
          spec:
            functions: com.example/*
            urlPathTemplate: https://functions.example.com/{function.name}
            maxNumBatchRequests: 500
            timeouts:
              call: 2 min
    ingresses:
      - ingress:
          meta:
            type: io.statefun.kafka/ingress
            id: com.example/names
          spec:
            address: kafka:9092
            consumerGroupId: my-group
            topics:
              - topic: names
                valueType: com.example/Name
                targets:
                  - com.example/greeter
    egresses:
      - egress:
          meta:
            type: io.statefun.kafka/egress
            id: com.example/greets
          spec:
            address: kafka:9092
            deliverySemantic:
              type: exactly-once
              transactionTimeoutMillis: 100000
"""


def test_legacy_module_becomes_components(files):
    module = files.load(LEGACY)
    (endpoint,) = module.endpoints
    assert endpoint.kind == "io.statefun.endpoints.v1/http"
    assert endpoint.max_num_batch_requests == 500
    assert endpoint.url_for("greeter") == "https://functions.example.com/greeter"
    assert endpoint.transport == TransportSpec(
        type="okhttp", call=timedelta(minutes=2), connect=timedelta(seconds=10), read=timedelta(seconds=10), write=timedelta(seconds=10), pool_ttl=timedelta(minutes=1)
    )
    assert endpoint.origin == "document 1, module.spec.endpoints[0] (io.statefun.endpoints.v1/http)"
    (ingress,) = module.ingresses
    assert isinstance(ingress, KafkaIngress)
    assert ingress.kind == "io.statefun.kafka.v1/ingress" and ingress.id == "com.example/names"
    (egress,) = module.egresses
    assert isinstance(egress, KafkaEgress)
    assert egress.id == "com.example/greets"
    assert egress.delivery_semantic.transaction_timeout == timedelta(seconds=100)


def test_legacy_accepts_current_kinds_and_an_unquoted_version(files):
    module = files.load(
        """
        version: 3.0
        module:
          meta: {type: REMOTE}
          spec:
            endpoints:
              - endpoint:
                  meta: {kind: io.statefun.endpoints.v2/http}
                  spec: {functions: a/*, urlPathTemplate: "http://a/"}
            ingresses:
              - ingress:
                  meta: {type: io.statefun.kinesis/ingress, id: a/in}
                  spec:
                    streams: [{stream: s, valueType: a/V, targets: [a/f]}]
            egresses:
              - egress:
                  meta: {type: io.statefun.kinesis.v1/egress, id: a/out}
                  spec: {}
        """
    )
    assert module.endpoints[0].transport.type == "async"
    assert module.ingresses[0].kind == "io.statefun.kinesis.v1/ingress" and module.ingresses[0].id == "a/in"
    assert module.egresses[0].kind == "io.statefun.kinesis.v1/egress" and module.egresses[0].id == "a/out"


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_old_versions_are_refused(files, version):
    problem = files.problem(
        f"""
        version: "{version}"
        module:
          meta: {{type: remote}}
          spec: {{functions: []}}
        """
    )
    assert f"module.yaml, document 1: version: format version {version} is not supported (StateFun 3 reads only '3.0' and the component format)" in problem
    assert "rewrite the file as kind/spec documents" in problem


def test_unknown_version(files):
    problem = files.problem('version: "4.0"\nmodule: {}\n')
    assert "version: unknown format version '4.0'" in problem


def test_legacy_problems_keep_their_real_paths(files):
    text = LEGACY.replace("kind: http", "kind: grpc").replace("valueType: com.example/Name", "valueType: Name")
    text = text.replace("            id: com.example/greets\n", "            id: com.example/greets\n          extra: 1\n")
    text = text.replace("    type: remote", "    type: embedded")
    error = files.error(text)
    messages = str(error)
    assert "document 1: module.meta.type: unknown module type 'embedded': StateFun 3 reads only 'remote' modules" in messages
    assert "document 1: module.spec.endpoints[0].endpoint.meta.kind: unknown kind 'grpc'" in messages
    assert "or a legacy one: http, io.statefun.kafka/ingress" in messages
    assert "document 1 (io.statefun.kafka.v1/ingress): module.spec.ingresses[0].ingress.spec.topics[0].valueType: 'Name' is not a type name" in messages
    assert "document 1: module.spec.egresses[0].egress.extra: unknown key 'extra' (allowed keys: meta, spec)" in messages


def test_legacy_structure_problems(files):
    error = files.error(
        """
        version: "3.0"
        module:
          spec:
            functions: []
            endpoints:
              - endpoint:
                  spec: {}
              - http
            ingresses:
              - ingress:
                  meta: {type: io.statefun.kafka/ingress, id: com.example/in}
                  spec:
                    id: com.example/other
                    address: k:9092
                    consumerGroupId: g
                    topics: [{topic: t, valueType: a/b, targets: [com.example/f]}]
            egresses: {}
        """
    )
    text = str(error)
    assert "module: missing required key 'meta', e.g. meta: {type: remote}" in text
    assert "module.spec.functions: key 'functions' is not allowed here: was part of the format versions 1.0/2.0" in text
    assert "module.spec.endpoints[0].endpoint: missing required key 'meta' (with 'kind')" in text
    assert "module.spec.endpoints[1]: expected a mapping of keys to values, got the string 'http'" in text
    assert "module.spec.ingresses[0].ingress.spec.id: the id is given in meta.id already: remove it here" in text
    assert "module.spec.egresses: expected a list, got a mapping" in text
    assert "module.spec.ingresses[0].ingress.spec.topics[0].targets[0]: no endpoint or embedded module in this file serves the function type 'com.example/f'" in text


def test_a_version_key_in_a_multi_document_file_is_explained(files):
    problem = files.problem(
        """
        version: "3.0"
        kind: io.statefun.playground.v1/ingress
        spec: {port: 8090}
        ---
        kind: io.statefun.playground.v1/egress
        spec: {port: 8091, topics: [t]}
        """
    )
    assert "document 1 (io.statefun.playground.v1/ingress): version: key 'version' is not allowed here: 'version' belongs to the legacy single-document format" in problem
