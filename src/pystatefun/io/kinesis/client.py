"""The botocore Kinesis client of an ingress or egress, made from the module's ``awsRegion``,
``awsCredentials`` and ``clientConfigProperties`` (spec §3.5), and how its errors are told apart.

botocore is AWS's own client core (boto3 and the AWS CLI are built on it): it signs, resolves the
default credential and region chains (environment, ``~/.aws/config``, instance roles) and knows every
error code, so nothing of that is written here. Its calls block, so the ingress and egress run them in
threads of their own.

``clientConfigProperties`` are the AWS SDK client settings StateFun passed on (``SocketTimeout``,
``MaxConnections``, ...) and the Flink Kinesis consumer's reading settings (``flink.shard.*``) that
StateFun users put there; names neither knows are logged and ignored, as StateFun ignores them, so a
module written for StateFun runs unchanged (docs/kinesis.md lists them).
"""

from __future__ import annotations

import logging
import os
import typing
from dataclasses import dataclass

import botocore.config
import botocore.exceptions
import botocore.session

from pystatefun.config.model import AwsCredentials, AwsRegion

log = logging.getLogger("pystatefun.kinesis")

# error codes that pass by themselves: asked again with backoff, counted as throttles
THROTTLING = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException",
                        "KMSThrottlingException"})
EXPIRED_ITERATOR = "ExpiredIteratorException"
NOT_FOUND = "ResourceNotFoundException"


@dataclass(frozen=True)
class ReadSettings:
    """How an ingress reads a shard (the Flink Kinesis consumer's names and defaults)."""

    max_records: int = 10_000  # flink.shard.getrecords.maxrecordcount: records per GetRecords (Kinesis' maximum)
    idle_seconds: float = 0.2  # flink.shard.getrecords.intervalmillis: the wait after a call that found nothing
    discovery_seconds: float = 10.0  # flink.shard.discovery.intervalmillis: how often new shards are looked for


def _milliseconds(name: str, text: str) -> float:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"clientConfigProperties {name}: {text!r} is not a whole number of milliseconds") from None
    if value < 0:
        raise ValueError(f"clientConfigProperties {name}: {value} is negative")
    return value / 1000


def _count(name: str, text: str, minimum: int, maximum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"clientConfigProperties {name}: {text!r} is not a whole number") from None
    if not minimum <= value <= maximum:
        raise ValueError(f"clientConfigProperties {name}: {value} is not from {minimum} to {maximum}")
    return value


def client_settings(properties: typing.Mapping[str, str], what: str) -> tuple[botocore.config.Config, ReadSettings]:
    """The botocore client configuration and the read settings that ``clientConfigProperties`` ask for.
    Raises ValueError naming the property for a value that cannot be used."""
    config: dict[str, typing.Any] = {}
    read: dict[str, typing.Any] = {}
    ignored = []
    for name, text in properties.items():
        if name in ("SocketTimeout", "RequestTimeout"):  # the AWS SDK's and the KPL's names
            config["read_timeout"] = _milliseconds(name, text)
        elif name == "ConnectionTimeout":
            config["connect_timeout"] = _milliseconds(name, text)
        elif name == "MaxConnections":
            config["max_pool_connections"] = _count(name, text, 1, 10_000)
        elif name in ("MaxErrorRetry", "MaxErrorRetries"):
            config["retries"] = {"total_max_attempts": _count(name, text, 0, 100) + 1, "mode": "standard"}
        elif name in ("UserAgentPrefix", "UserAgentSuffix", "UserAgent"):
            config["user_agent_extra"] = text
        elif name == "flink.shard.getrecords.maxrecordcount":
            read["max_records"] = _count(name, text, 1, 10_000)
        elif name == "flink.shard.getrecords.intervalmillis":
            read["idle_seconds"] = _milliseconds(name, text)
        elif name == "flink.shard.discovery.intervalmillis":
            read["discovery_seconds"] = max(_milliseconds(name, text), 0.1)
        else:
            ignored.append(name)
    if ignored:
        log.warning("%s: pystatefun does not use the clientConfigProperties %s (docs/kinesis.md lists the ones it "
                    "takes); ignored", what, ", ".join(sorted(ignored)))
    # no retries of botocore's own (unless MaxErrorRetry asks): the ingress and egress retry throttling and
    # unreachable endpoints themselves, with backoff, so that every one is counted and shown in /health
    config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
    config.setdefault("connect_timeout", 5)
    config.setdefault("read_timeout", 30)
    return botocore.config.Config(**config), ReadSettings(**read)


def kinesis_client(region: AwsRegion, credentials: AwsCredentials, config: botocore.config.Config, what: str) -> typing.Any:
    """A botocore Kinesis client for ``region`` with ``credentials``. Raises ValueError when the default
    region chain finds no region (the first call would fail with a less helpful message)."""
    session = botocore.session.Session(profile=credentials.profile_name if credentials.type == "profile" else None)
    if credentials.type == "profile" and credentials.profile_path is not None:
        session.set_config_variable("credentials_file", str(credentials.profile_path))
    keys: dict[str, str] = {}
    if credentials.type == "basic":
        keys = {"aws_access_key_id": credentials.access_key_id, "aws_secret_access_key": credentials.secret_access_key}
    # the default chain: botocore's (AWS_DEFAULT_REGION, ~/.aws/config), then AWS_REGION, which the Java SDK
    # StateFun used reads first and botocore does not read at all
    region_name = region.id if region.type != "default" else (session.get_config_variable("region")
                                                             or os.environ.get("AWS_REGION"))
    if region_name is None:
        raise ValueError(f"{what}: awsRegion is 'default', and the default chain found no region: set AWS_REGION "
                         "(or AWS_DEFAULT_REGION, or region in ~/.aws/config), or use awsRegion type: specific")
    endpoint = region.endpoint if region.type == "custom-endpoint" else None
    try:
        if not keys and session.get_credentials() is None:
            raise ValueError(f"{what}: awsCredentials is {credentials.type!r}, and it found no credentials: set "
                             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use awsCredentials type: basic or profile")
        return session.create_client("kinesis", region_name=region_name, endpoint_url=endpoint, config=config, **keys)
    except botocore.exceptions.ProfileNotFound:
        where = credentials.profile_path or "~/.aws/credentials or ~/.aws/config"
        raise ValueError(f"{what}: awsCredentials profile {credentials.profile_name!r} is not in {where}") from None


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a failed call (``ProvisionedThroughputExceededException``, ...), None for a
    failure to reach the endpoint."""
    if isinstance(error, botocore.exceptions.ClientError):
        return error.response.get("Error", {}).get("Code")
    return None


def describe(error: BaseException) -> str:
    """One line for the log and /health."""
    if isinstance(error, botocore.exceptions.ClientError):
        info = error.response.get("Error", {})
        return f"{info.get('Code')}: {info.get('Message') or error}"
    return f"{type(error).__name__}: {error}"


def retried(error: BaseException) -> bool:
    """Whether the ingress and egress ask again (with backoff) after ``error`` instead of failing: any
    error answer of Kinesis, and any failure to reach it (refused, timed out, cut). A request botocore
    refuses to send (ParamValidationError) is a bug, not a passing condition."""
    return isinstance(error, (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)) and not isinstance(
        error, botocore.exceptions.ParamValidationError)
