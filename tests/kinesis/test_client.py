"""The Kinesis client of an ingress or egress: every ``awsRegion`` and ``awsCredentials`` type gives a
client that reaches the emulator with the region and keys asked for, ``clientConfigProperties`` become
client settings (or a clear error), and a record an egress cannot put is refused when it is emitted."""

from __future__ import annotations

import logging

import pytest

from pystatefun import kinesis_egress_message
from pystatefun.config.model import AwsCredentials, AwsRegion
from pystatefun.io.kinesis.client import client_settings, kinesis_client
from pystatefun.io.kinesis.records import check_record, put_entry
from pystatefun.wire.request_reply_pb2 import TypedValue

AWS_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_KINESIS", "AWS_EC2_METADATA_DISABLED")


@pytest.fixture
def clean_aws(monkeypatch, tmp_path):
    """No AWS settings from this machine: no variables, no ~/.aws, no instance metadata."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def client(region: AwsRegion, credentials: AwsCredentials, properties: dict[str, str] | None = None):
    config, _ = client_settings(properties or {}, "test")
    return kinesis_client(region, credentials, config, "Kinesis ingress com.example/in")


def access_key(kinesis) -> str:
    return kinesis._request_signer._credentials.get_frozen_credentials().access_key


def reaches(kinesis, stream: str) -> bool:
    """Whether the client works against the emulator: it makes a stream and finds it (moto keeps streams per
    region, so the client's own region is used)."""
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    return stream in kinesis.list_streams()["StreamNames"]


def test_custom_endpoint_and_basic_credentials_reach_the_emulator(clean_aws, emulator, stream_name):
    kinesis = client(AwsRegion(type="custom-endpoint", id="eu-west-3", endpoint=emulator.endpoint),
                     AwsCredentials(type="basic", access_key_id="AKIDBASIC", secret_access_key="secret"))
    assert kinesis.meta.region_name == "eu-west-3" and kinesis.meta.endpoint_url == emulator.endpoint
    assert access_key(kinesis) == "AKIDBASIC"
    assert reaches(kinesis, stream_name)


def test_profile_credentials_come_from_the_profile_file(clean_aws, emulator, stream_name, tmp_path):
    profiles = tmp_path / "aws" / "credentials"
    profiles.parent.mkdir()
    profiles.write_text("[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = x\n"
                        "[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = y\n")
    kinesis = client(AwsRegion(type="custom-endpoint", id="us-east-1", endpoint=emulator.endpoint),
                     AwsCredentials(type="profile", profile_name="dev", profile_path=profiles))
    assert access_key(kinesis) == "AKIDDEV"
    assert reaches(kinesis, stream_name)
    with pytest.raises(ValueError, match=f"awsCredentials profile 'prod' is not in {profiles}"):
        client(AwsRegion(type="specific", id="us-east-1"), AwsCredentials(type="profile", profile_name="prod",
                                                                          profile_path=profiles))


def test_default_region_and_credentials_come_from_the_environment(clean_aws, emulator, stream_name):
    """The AWS SDKs' default chains: AWS_REGION, the key variables, and AWS_ENDPOINT_URL_KINESIS (which
    points a `default` or `specific` region at an emulator or a VPC endpoint without custom-endpoint)."""
    clean_aws.setenv("AWS_REGION", "ap-south-1")
    clean_aws.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    clean_aws.setenv("AWS_SECRET_ACCESS_KEY", "z")
    clean_aws.setenv("AWS_ENDPOINT_URL_KINESIS", emulator.endpoint)
    kinesis = client(AwsRegion(type="default"), AwsCredentials(type="default"))
    assert kinesis.meta.region_name == "ap-south-1" and access_key(kinesis) == "AKIDENV"
    assert reaches(kinesis, stream_name)
    specific = client(AwsRegion(type="specific", id="sa-east-1"), AwsCredentials(type="default"))
    assert specific.meta.region_name == "sa-east-1"
    assert reaches(specific, f"{stream_name}-2")


def test_no_region_or_no_credentials_is_a_clear_error(clean_aws):
    with pytest.raises(ValueError, match="awsRegion is 'default', and the default chain found no region: set AWS_REGION"):
        client(AwsRegion(type="default"), AwsCredentials(type="basic", access_key_id="a", secret_access_key="b"))
    with pytest.raises(ValueError, match="awsCredentials is 'default', and it found no credentials: set AWS_ACCESS_KEY_ID"):
        client(AwsRegion(type="specific", id="us-east-1"), AwsCredentials(type="default"))


def test_client_config_properties_become_client_settings(caplog):
    with caplog.at_level(logging.WARNING, "pystatefun.kinesis"):
        config, read = client_settings({
            "SocketTimeout": "2500", "ConnectionTimeout": "700", "MaxConnections": "7", "MaxErrorRetry": "2",
            "flink.shard.getrecords.maxrecordcount": "500", "flink.shard.getrecords.intervalmillis": "20",
            "flink.shard.discovery.intervalmillis": "1500", "ThreadingModel": "POOLED", "RecordTtl": "30000",
        }, "Kinesis egress com.example/out")
    assert (config.read_timeout, config.connect_timeout, config.max_pool_connections) == (2.5, 0.7, 7)
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}  # MaxErrorRetry 2: three attempts
    assert (read.max_records, read.idle_seconds, read.discovery_seconds) == (500, 0.02, 1.5)
    assert ("Kinesis egress com.example/out: pystatefun does not use the clientConfigProperties RecordTtl, "
            "ThreadingModel") in caplog.text


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SocketTimeout", "soon", "clientConfigProperties SocketTimeout: 'soon' is not a whole number of milliseconds"),
    ("MaxConnections", "0", "clientConfigProperties MaxConnections: 0 is not from 1 to 10000"),
    ("flink.shard.getrecords.maxrecordcount", "20000", "flink.shard.getrecords.maxrecordcount: 20000 is not from 1 to 10000"),
    ("ConnectionTimeout", "-1", "clientConfigProperties ConnectionTimeout: -1 is negative"),
])
def test_a_client_config_property_that_cannot_be_used_is_an_error(name, value, message):
    with pytest.raises(ValueError, match=message):
        client_settings({name: value}, "test")


def egress_value(**arguments) -> TypedValue:
    return kinesis_egress_message(typename="com.example/out", **arguments).typed_value


@pytest.mark.parametrize(("value", "message"), [
    (TypedValue(typename="com.example/Other", has_value=True, value=b"x"),
     "a Kinesis egress takes type.googleapis.com/io.statefun.sdk.egress.KinesisEgressRecord values"),
    (egress_value(stream="s-ü", value="v", partition_key="k"), "stream 's-ü' is not a Kinesis stream name"),
    (egress_value(stream="s", value="v", partition_key=""), "needs a partition key"),
    (egress_value(stream="s", value="v", partition_key="k" * 257), "the partition key is 257 characters long"),
    (egress_value(stream="s", value=b"x" * (1024 * 1024), partition_key="k"), "Kinesis takes at most 1048576"),
    (egress_value(stream="s", value="v", partition_key="k", explicit_hash_key="١٢"), "is not a whole number from 0"),
    (egress_value(stream="s", value="v", partition_key="k", explicit_hash_key="007"), "is not a whole number from 0"),
    (egress_value(stream="s", value="v", partition_key="k", explicit_hash_key=str(2**128)), "is not a whole number from 0"),
], ids=["typename", "stream-name", "no-key", "long-key", "too-big", "hash-not-ascii", "hash-leading-zero", "hash-too-big"])
def test_a_record_kinesis_would_refuse_is_refused_when_emitted(value, message):
    with pytest.raises(ValueError, match=message):
        check_record(value)


def test_record_ids_lead_the_data_only_when_asked_for():
    record = check_record(egress_value(stream="s", value="v", partition_key="k", explicit_hash_key=str(2**128 - 1)))
    assert put_entry(record, None) == {"Data": b"v", "PartitionKey": "k", "ExplicitHashKey": str(2**128 - 1)}
    assert put_entry(record, "app-3-17")["Data"] == b"pystatefun-id:app-3-17\nv"
