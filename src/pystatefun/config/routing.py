"""Pieces shared by the Kafka and Kinesis kinds: record routing, bad-record policies and startup dates."""

from __future__ import annotations

import re
import typing
from datetime import datetime

from pystatefun.config.model import Routing
from pystatefun.config.reader import (
    Fields,
    Invalid,
    Node,
    Parser,
    Reported,
    choice,
    describe,
    sequence,
    string,
    typename,
    value_typename,
)

DATE_PATTERN = "yyyy-MM-dd HH:mm:ss.SSS Z"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} [+-]\d{4}")


def routing(source_key: str) -> Parser[Routing]:
    """One ``{<source_key>, valueType, targets}`` entry of ``topics`` (Kafka) or ``streams`` (Kinesis)."""

    def parse(node: Node) -> Routing:
        if not isinstance(node.value, dict):
            raise Invalid(f"expected a mapping like {{{source_key}: names, valueType: com.example/Name, targets: [com.example/greeter]}}, got {describe(node.value)}")
        fields = Fields(node)
        source = fields.required(source_key, string, example="names")
        value_type = fields.required("valueType", value_typename, example="com.example/Name")
        targets = fields.required("targets", sequence(typename, nonempty=True, example="com.example/greeter"), example="[com.example/greeter]")
        fields.finish()
        if source is None or value_type is None or targets is None:
            raise Reported
        return Routing(source=source, value_type=value_type, targets=targets)

    return parse


def routings(node: Node, source_key: str) -> tuple[Routing, ...]:
    """The non-empty list of routings, each source named once (StateFun keeps only the last of two)."""
    example = f"{{{source_key}: names, valueType: com.example/Name, targets: [com.example/greeter]}}"
    if not isinstance(node.value, list) or not node.value:
        raise Invalid(f"expected a non-empty list of routings like [{example}], got {describe(node.value)}")
    parsed: list[Routing] = []
    for index, value in enumerate(node.value):
        entry = node.child(index, value).parse(routing(source_key))
        if entry is None:
            continue
        if any(other.source == entry.source for other in parsed):
            node.child(index, value).report(f"{source_key} {entry.source!r} is listed twice: merge the two entries' targets into one")
        parsed.append(entry)
    return tuple(parsed)


T = typing.TypeVar("T")


def bad_records_parser(model: typing.Callable[..., T], dead_letter: str, key: str, example: str) -> Parser[T]:
    """``badRecords`` of a Kafka or Kinesis ingress (ours): ``fail``, ``skip``, or ``dead_letter`` with ``key``
    (the topic or stream the records go to)."""

    def parse(node: Node) -> T:
        fields = Fields(node)
        if not fields.valid:
            raise Reported
        kind = fields.required("type", choice("fail", "skip", dead_letter), example="skip")
        if kind is None:
            fields.allow(key)
        target = fields.required(key, string, example=example) if kind == dead_letter else None
        fields.finish(hints={key: f"only with type: {dead_letter}"})
        if kind is None or (kind == dead_letter and target is None):
            raise Reported
        return model(type=kind, **{key: target})

    return parse


def startup_date(node: Node) -> datetime:
    """A startup date in StateFun's pattern ``yyyy-MM-dd HH:mm:ss.SSS Z``, e.g. ``2020-02-01 04:15:00.000 +0000``."""
    text = string(node).strip()
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f %z")
    except ValueError:
        raise Invalid(f"invalid date {text!r}: use the pattern '{DATE_PATTERN}', e.g. '2020-02-01 04:15:00.000 +0000'") from None
