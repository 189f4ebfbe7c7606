"""io.statefun.kinesis.v1/ingress and /egress: every key of spec §3.5."""

from datetime import UTC, datetime

import pytest

from pystatefun.config import (
    AwsCredentials,
    AwsRegion,
    KinesisBadRecords,
    KinesisEgress,
    KinesisIngress,
    KinesisStartupPosition,
    Routing,
)

BINDING = """
kind: pystatefun.v1/embedded
spec:
  functions: com.example/*
  module: app:functions
---
"""


def test_ingress_minimal(files):
    module = files.load(
        BINDING
        + """
kind: io.statefun.kinesis.v1/ingress
spec:
  id: com.example/names
  streams:
    - stream: names
      valueType: com.example/Name
      targets: [com.example/greeter]
"""
    )
    assert module.ingresses == (
        KinesisIngress(id="com.example/names", streams=(Routing(source="names", value_type="com.example/Name", targets=("com.example/greeter",)),)),
    )
    ingress = module.ingresses[0]
    assert ingress.kind == "io.statefun.kinesis.v1/ingress"
    assert ingress.aws_region == AwsRegion(type="default")
    assert ingress.aws_credentials == AwsCredentials(type="default")
    assert ingress.startup_position == KinesisStartupPosition(type="latest")
    assert dict(ingress.client_config_properties) == {}


def test_ingress_full(files):
    module = files.load(
        BINDING
        + """
kind: io.statefun.kinesis.v1/ingress
spec:
  id: com.example/names
  awsRegion:
    type: custom-endpoint
    endpoint: https://localhost:4567
    id: us-west-1
  awsCredentials:
    type: basic
    accessKeyId: AKIA123
    secretAccessKey: s3cr3t
  startupPosition:
    type: date
    date: 2020-02-01 04:15:00.000 +0000
  streams:
    - stream: names
      valueType: com.example/Name
      targets: [com.example/greeter, com.example/counter]
  clientConfigProperties:
    - SocketTimeout: 9999
    - MaxConnections: 15
"""
    )
    ingress = module.ingresses[0]
    assert ingress.aws_region == AwsRegion(type="custom-endpoint", endpoint="https://localhost:4567", id="us-west-1")
    assert ingress.aws_credentials == AwsCredentials(type="basic", access_key_id="AKIA123", secret_access_key="s3cr3t")
    assert "s3cr3t" not in repr(ingress)
    assert ingress.startup_position == KinesisStartupPosition(type="date", date=datetime(2020, 2, 1, 4, 15, tzinfo=UTC))
    assert ingress.streams[0].targets == ("com.example/greeter", "com.example/counter")
    assert dict(ingress.client_config_properties) == {"SocketTimeout": "9999", "MaxConnections": "15"}


def test_egress_minimal_and_full(files):
    module = files.load(
        """
        kind: io.statefun.kinesis.v1/egress
        spec:
          id: com.example/out
        ---
        kind: io.statefun.kinesis.v1/egress
        spec:
          id: com.example/full
          awsRegion:
            type: specific
            id: eu-central-1
          awsCredentials:
            type: profile
            profileName: dev
            profilePath: aws/credentials
          maxOutstandingRecords: 9999
          clientConfigProperties:
            - ThreadingModel: POOLED
        """
    )
    minimal, full = module.egresses
    assert minimal == KinesisEgress(id="com.example/out")
    assert minimal.max_outstanding_records == 1000 and minimal.aws_region.type == "default"
    assert full.aws_region == AwsRegion(type="specific", id="eu-central-1")
    assert full.aws_credentials == AwsCredentials(type="profile", profile_name="dev", profile_path=files.folder / "aws/credentials")
    assert full.max_outstanding_records == 9999
    assert dict(full.client_config_properties) == {"ThreadingModel": "POOLED"}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("awsRegion: {type: specific}", "spec.awsRegion: missing required key 'id', e.g. id: us-west-1"),
        ("awsRegion: {type: custom-endpoint, id: us-west-1}", "spec.awsRegion: missing required key 'endpoint'"),
        ("awsRegion: {type: custom-endpoint, id: us-west-1, endpoint: localhost:4567}", "spec.awsRegion.endpoint: 'localhost:4567' is not an http(s) URL"),
        ("awsRegion: {type: default, id: us-west-1}", "spec.awsRegion.id: key 'id' is not allowed here: only with type: specific or custom-endpoint"),
        ("awsRegion: {type: us-west-1}", "spec.awsRegion.type: 'us-west-1' is not one of: default, specific, custom-endpoint"),
        ("awsRegion: {id: us-west-1}", "spec.awsRegion: missing required key 'type'"),
        ("awsCredentials: {type: basic, accessKeyId: a}", "spec.awsCredentials: missing required key 'secretAccessKey'"),
        ("awsCredentials: {type: profile}", "spec.awsCredentials: missing required key 'profileName'"),
        ("awsCredentials: {type: basic, accessKeyId: a, secretAccessKey: b, profileName: p}", "spec.awsCredentials.profileName: key 'profileName' is not allowed here: only with type: profile"),
        ("awsCredentials: {type: default, profilePath: /x}", "spec.awsCredentials.profilePath: key 'profilePath' is not allowed here: only with type: profile"),
        ("awsCredentials: {type: env}", "spec.awsCredentials.type: 'env' is not one of: default, basic, profile"),
        ("startupPosition: {type: group-offsets}", "spec.startupPosition.type: 'group-offsets' is not one of: latest, earliest, date"),
        ("startupPosition: {type: date, date: yesterday}", "spec.startupPosition.date: invalid date 'yesterday'"),
        ("startupPosition: {type: earliest, date: '2020-02-01 04:15:00.000 +0000'}", "spec.startupPosition.date: key 'date' is not allowed here: only with type: date"),
        ("clientConfigProperties: {a: b}", "spec.clientConfigProperties: expected a list of single-key maps like '- group.id: my-group', got a mapping"),
        ("region: us-west-1", "spec.region: unknown key 'region'"),
        ("badRecords: {type: dead-letter-topic}", "spec.badRecords.type: 'dead-letter-topic' is not one of: fail, skip, dead-letter-stream"),
        ("badRecords: {type: dead-letter-stream}", "spec.badRecords: missing required key 'stream', e.g. stream: my-app-dead-letters"),
        ("badRecords: {type: skip, stream: dead}", "spec.badRecords.stream: key 'stream' is not allowed here: only with type: dead-letter-stream"),
    ],
)
def test_ingress_problems(files, block, message):
    problem = files.problem(
        BINDING
        + f"""
kind: io.statefun.kinesis.v1/ingress
spec:
  id: com.example/names
  streams: [{{stream: names, valueType: com.example/Name, targets: [com.example/greeter]}}]
  {block}
"""
    )
    assert "module.yaml, document 2 (io.statefun.kinesis.v1/ingress): " + message in problem


def test_ingress_needs_streams_and_egress_checks_its_keys(files):
    error = files.error(
        """
        kind: io.statefun.kinesis.v1/ingress
        spec:
          id: com.example/names
          streams: []
        ---
        kind: io.statefun.kinesis.v1/egress
        spec:
          id: com.example/out
          maxOutstandingRecords: 0
          streams: [a]
        """
    )
    text = str(error)
    assert "document 1 (io.statefun.kinesis.v1/ingress): spec.streams: expected a non-empty list of routings" in text
    assert "document 2 (io.statefun.kinesis.v1/egress): spec.maxOutstandingRecords: 0 is too small: use a number from 1 to 100000" in text
    assert "document 2 (io.statefun.kinesis.v1/egress): spec.streams: unknown key 'streams'" in text


def test_bad_records_and_record_ids(files):
    module = files.load(
        BINDING
        + """
kind: io.statefun.kinesis.v1/ingress
spec:
  id: com.example/names
  streams: [{stream: names, valueType: com.example/Name, targets: [com.example/greeter]}]
  badRecords: {type: dead-letter-stream, stream: names-dead}
---
kind: io.statefun.kinesis.v1/egress
spec:
  id: com.example/out
  recordIds: true
---
kind: io.statefun.kinesis.v1/egress
spec:
  id: com.example/plain
"""
    )
    assert module.ingresses[0].bad_records == KinesisBadRecords(type="dead-letter-stream", stream="names-dead")
    assert [egress.record_ids for egress in module.egresses] == [True, False]
    minimal = files.load(BINDING + """
kind: io.statefun.kinesis.v1/ingress
spec:
  id: com.example/names
  streams: [{stream: names, valueType: com.example/Name, targets: [com.example/greeter]}]
""")
    assert minimal.ingresses[0].bad_records == KinesisBadRecords(type="fail")


def test_record_ids_must_be_a_boolean(files):
    problem = files.problem(BINDING + """
kind: io.statefun.kinesis.v1/egress
spec:
  id: com.example/out
  recordIds: sometimes
""")
    assert "spec.recordIds: expected true or false, got the string 'sometimes'" in problem
