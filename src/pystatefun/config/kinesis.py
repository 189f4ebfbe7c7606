"""``io.statefun.kinesis.v1/ingress`` and ``io.statefun.kinesis.v1/egress`` (spec §3.5), every key checked.

The keys are the code's, not the docs' (whose region and profile examples are wrong, spec §8.12).
"""

from __future__ import annotations

import types
import urllib.parse
from pathlib import Path

from pystatefun.config.model import (
    MAX_OUTSTANDING_RECORDS,
    AwsCredentials,
    AwsRegion,
    KinesisBadRecords,
    KinesisEgress,
    KinesisIngress,
    KinesisStartupPosition,
    Routing,
)
from pystatefun.config.reader import Context, Fields, Invalid, Node, Reported, boolean, choice, integer, properties, string, typename
from pystatefun.config.routing import bad_records_parser, routings, startup_date


def parse_kinesis_ingress(fields: Fields, ctx: Context) -> KinesisIngress:
    ingress_id = fields.required("id", typename, example="com.example/names")
    streams = fields.required("streams", _streams, example="[{stream: names, valueType: com.example/Name, targets: [com.example/greeter]}]")
    region = fields.optional("awsRegion", _aws_region, AwsRegion())
    credentials = fields.optional("awsCredentials", _aws_credentials, AwsCredentials())
    startup = fields.optional("startupPosition", _startup_position, KinesisStartupPosition())
    bad_records = fields.optional("badRecords", bad_records_parser(KinesisBadRecords, "dead-letter-stream", "stream",
                                                                   "my-app-dead-letters"), KinesisBadRecords())
    client_properties: dict[str, str] = fields.optional("clientConfigProperties", properties, {})
    fields.finish()
    if ingress_id is None or streams is None:
        raise Reported
    return KinesisIngress(
        id=ingress_id,
        streams=streams,
        aws_region=region,
        aws_credentials=credentials,
        startup_position=startup,
        bad_records=bad_records,
        client_config_properties=types.MappingProxyType(client_properties),
        origin=ctx.origin,
    )


def parse_kinesis_egress(fields: Fields, ctx: Context) -> KinesisEgress:
    egress_id = fields.required("id", typename, example="com.example/greets")
    region = fields.optional("awsRegion", _aws_region, AwsRegion())
    credentials = fields.optional("awsCredentials", _aws_credentials, AwsCredentials())
    max_outstanding = fields.optional("maxOutstandingRecords", integer(1, MAX_OUTSTANDING_RECORDS), 1000)
    record_ids = fields.optional("recordIds", boolean, False)
    client_properties: dict[str, str] = fields.optional("clientConfigProperties", properties, {})
    fields.finish()
    if egress_id is None:
        raise Reported
    return KinesisEgress(
        id=egress_id,
        aws_region=region,
        aws_credentials=credentials,
        max_outstanding_records=max_outstanding,
        record_ids=record_ids,
        client_config_properties=types.MappingProxyType(client_properties),
        origin=ctx.origin,
    )


def _streams(node: Node) -> tuple[Routing, ...]:
    return routings(node, "stream")


def _endpoint(node: Node) -> str:
    text = string(node).strip()
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Invalid(f"{text!r} is not an http(s) URL: write e.g. 'https://kinesis.example.com:4567'")
    return text


def _aws_region(node: Node) -> AwsRegion:
    fields = Fields(node)
    if not fields.valid:
        raise Reported
    kind = fields.required("type", choice("default", "specific", "custom-endpoint"), example="specific")
    if kind is None:
        fields.allow("id", "endpoint")
    region_id = endpoint = None
    if kind in ("specific", "custom-endpoint"):
        region_id = fields.required("id", string, example="us-west-1")
    if kind == "custom-endpoint":
        endpoint = fields.required("endpoint", _endpoint, example="https://localhost:4567")
    fields.finish(hints={"id": "only with type: specific or custom-endpoint", "endpoint": "only with type: custom-endpoint"})
    if kind is None or (kind != "default" and region_id is None) or (kind == "custom-endpoint" and endpoint is None):
        raise Reported
    return AwsRegion(type=kind, id=region_id, endpoint=endpoint)  # type: ignore[arg-type]


def _profile_path(node: Node) -> Path:
    path = Path(string(node)).expanduser()
    return path if path.is_absolute() else node.ctx.base_dir / path


def _aws_credentials(node: Node) -> AwsCredentials:
    fields = Fields(node)
    if not fields.valid:
        raise Reported
    kind = fields.required("type", choice("default", "basic", "profile"), example="basic")
    if kind is None:
        fields.allow("accessKeyId", "secretAccessKey", "profileName", "profilePath")
    values: dict = {}
    if kind == "basic":
        values["access_key_id"] = fields.required("accessKeyId", string, example="${AWS_ACCESS_KEY_ID}")
        values["secret_access_key"] = fields.required("secretAccessKey", string, example="${AWS_SECRET_ACCESS_KEY}")
    elif kind == "profile":
        values["profile_name"] = fields.required("profileName", string, example="default")
        values["profile_path"] = fields.optional("profilePath", _profile_path, None)
    basic, profile = "only with type: basic", "only with type: profile"
    fields.finish(hints={"accessKeyId": basic, "secretAccessKey": basic, "profileName": profile, "profilePath": profile})
    if kind is None or any(values.get(key) is None for key in ("access_key_id", "secret_access_key", "profile_name") if key in values):
        raise Reported
    return AwsCredentials(type=kind, **values)  # type: ignore[arg-type]


def _startup_position(node: Node) -> KinesisStartupPosition:
    fields = Fields(node)
    if not fields.valid:
        raise Reported
    kind = fields.required("type", choice("latest", "earliest", "date"), example="earliest")
    if kind is None:
        fields.allow("date")
    date = fields.required("date", startup_date, example="'2020-02-01 04:15:00.000 +0000'") if kind == "date" else None
    fields.finish(hints={"date": "only with type: date"})
    if kind is None or (kind == "date" and date is None):
        raise Reported
    return KinesisStartupPosition(type=kind, date=date)  # type: ignore[arg-type]

