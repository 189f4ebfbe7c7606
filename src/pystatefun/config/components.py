"""The component format: each YAML document is ``{kind: <typename>, spec: {...}}``, read by its kind's parser."""

from __future__ import annotations

import difflib
import typing

from pystatefun.config import functions, kafka, kinesis, playground
from pystatefun.config.model import (
    KIND_EMBEDDED,
    KIND_HTTP_V1,
    KIND_HTTP_V2,
    KIND_KAFKA_EGRESS,
    KIND_KAFKA_INGRESS,
    KIND_KINESIS_EGRESS,
    KIND_KINESIS_INGRESS,
    KIND_PLAYGROUND_EGRESS,
    KIND_PLAYGROUND_INGRESS,
    Component,
)
from pystatefun.config.reader import Context, Fields, Node, Reported, describe

ComponentParser = typing.Callable[[Fields, Context], Component]

KINDS: dict[str, ComponentParser] = {
    KIND_HTTP_V2: functions.parse_http_endpoint,
    KIND_HTTP_V1: functions.parse_http_endpoint,
    KIND_EMBEDDED: functions.parse_embedded,
    KIND_PLAYGROUND_INGRESS: playground.parse_playground_ingress,
    KIND_PLAYGROUND_EGRESS: playground.parse_playground_egress,
    KIND_KAFKA_INGRESS: kafka.parse_kafka_ingress,
    KIND_KAFKA_EGRESS: kafka.parse_kafka_egress,
    KIND_KINESIS_INGRESS: kinesis.parse_kinesis_ingress,
    KIND_KINESIS_EGRESS: kinesis.parse_kinesis_egress,
}


def unknown_kind_message(kind: str) -> str:
    close = difflib.get_close_matches(kind, KINDS, n=1, cutoff=0.6)
    guess = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown kind '{kind}' ({guess}known kinds: {', '.join(KINDS)})"


def parse_spec(kind: str, spec: Node, extra: dict[str, Node] | None = None) -> Component | None:
    """Reads ``spec`` as a component of ``kind`` (a known kind); ``None`` if it has problems (recorded).
    ``extra`` supplies keys written elsewhere (the legacy format's ``meta.id``)."""
    fields = Fields(spec, extra)
    if not fields.valid:
        return None
    try:
        return KINDS[kind](fields, spec.ctx)
    except Reported:  # its problems are recorded
        return None


def parse_document(root: Node) -> tuple[Component, Node] | None:
    """Reads one ``{kind, spec}`` document; returns the component and its spec node, or ``None`` when the
    document has problems that stop it from being read (they are recorded)."""
    if not isinstance(root.value, dict):
        root.report(f"expected a component: a mapping with 'kind' and 'spec', got {describe(root.value)}")
        return None
    fields = Fields(root)
    kind_node = fields.get("kind")
    if kind_node is not None and isinstance(kind_node.value, str):
        root.ctx.kind = kind_node.value  # so that every problem of the document names it
    spec = fields.get("spec")
    fields.finish(hints={"version": "'version' belongs to the legacy single-document format (version: \"3.0\" with a 'module' key); a file with several documents uses the component format, one {kind, spec} per document"})
    if kind_node is None:
        root.report("missing required key 'kind', e.g. kind: io.statefun.endpoints.v2/http")
        return None
    if root.ctx.kind not in KINDS:
        kind = kind_node.value
        kind_node.report(unknown_kind_message(kind) if isinstance(kind, str) else f"expected a kind name, got {describe(kind)}")
        return None
    if spec is None:
        if "spec" in root.value:  # `spec:` with nothing under it: its keys are most likely not indented
            root.report("'spec' is empty: its settings belong under it, each indented by two spaces")
        else:
            root.report("missing required key 'spec' (the component's settings)")
        return None
    component = parse_spec(root.ctx.kind, spec)
    return (component, spec) if component is not None else None
