"""The legacy single-document format of StateFun 3.0 (``version: "3.0"``), read as components.

StateFun 3.1 replaced it with the component format but still reads it (``LegacyRemoteModuleV30``):
``module.spec.endpoints[].endpoint.{meta.kind, spec}`` and ``module.spec.{ingresses,egresses}[]``
``.{ingress,egress}.{meta.{type,id}, spec}``, the ``meta.id`` moving into the spec. Each entry becomes
the component it stands for, so it is validated exactly like one; problems keep the entry's real path
(``module.spec.ingresses[0].ingress.spec.topics``). Versions 1.0 and 2.0 are refused, as in StateFun 3.
"""

from __future__ import annotations

from pystatefun.config.components import KINDS, parse_spec, unknown_kind_message
from pystatefun.config.model import Component
from pystatefun.config.reader import Fields, Node, describe
from pystatefun.config.source import format_path

LEGACY_KINDS = {
    "http": "io.statefun.endpoints.v1/http",
    "io.statefun.kafka/ingress": "io.statefun.kafka.v1/ingress",
    "io.statefun.kafka/egress": "io.statefun.kafka.v1/egress",
    "io.statefun.kinesis/ingress": "io.statefun.kinesis.v1/ingress",
    "io.statefun.kinesis/egress": "io.statefun.kinesis.v1/egress",
}

_SECTIONS = {"endpoints": ("endpoint", "kind"), "ingresses": ("ingress", "type"), "egresses": ("egress", "type")}


def is_legacy(data: object) -> bool:
    """A single document with a top-level ``version`` is the legacy format (StateFun's own test)."""
    return isinstance(data, dict) and "version" in data


def parse_legacy(root: Node) -> list[tuple[Component, Node]]:
    """The components of a legacy module document, with their spec nodes; problems are recorded."""
    fields = Fields(root)
    version_node = fields.get("version")
    module_node = fields.get("module")
    fields.finish()
    if version_node is None or not _version_ok(version_node):
        return []
    if module_node is None:
        root.report("missing required key 'module' (with 'meta: {type: remote}' and 'spec')")
        return []
    module = Fields(module_node)
    meta_node, spec_node = module.get("meta"), module.get("spec")
    module.finish()
    if not module.valid:
        return []
    if meta_node is None:
        module_node.report("missing required key 'meta', e.g. meta: {type: remote}")
    else:
        meta = Fields(meta_node)
        kind = meta.get("type")
        meta.finish()
        if meta.valid and kind is None:
            meta_node.report("missing required key 'type', e.g. type: remote")
        elif kind is not None and str(kind.value).lower() != "remote":
            kind.report(f"unknown module type {kind.value!r}: StateFun 3 reads only 'remote' modules")
    if spec_node is None:
        module_node.report("missing required key 'spec' (with 'endpoints', 'ingresses' and 'egresses')")
        return []
    spec = Fields(spec_node)
    sections = {name: spec.get(name) for name in _SECTIONS}
    removed = "was part of the format versions 1.0/2.0; in 3.0 functions are served by 'endpoints'"
    spec.finish(hints={"functions": removed, "routers": "was part of the format versions 1.0/2.0; ingresses route by their topics' targets"})
    components = []
    for name, section in sections.items():
        if section is None:
            continue
        if not isinstance(section.value, list):
            section.report(f"expected a list, got {describe(section.value)}")
            continue
        for index, entry in enumerate(section.value):
            parsed = _entry(section.child(index, entry), name)
            if parsed is not None:
                components.append(parsed)
    return components


def _version_ok(node: Node) -> bool:
    version = str(node.value)
    if version in ("3.0", "3"):
        return True
    if version in ("1.0", "2.0", "1", "2"):
        node.report(f"format version {version} is not supported (StateFun 3 reads only '3.0' and the component format): rewrite the file as kind/spec documents, see docs/configuration.md")
    else:
        node.report(f"unknown format version {node.value!r}: use the component format (one kind/spec document per component), or version: \"3.0\"")
    return False


def _entry(item: Node, section: str) -> tuple[Component, Node] | None:
    """One ``{endpoint|ingress|egress: {meta, spec}}`` entry as the component it stands for."""
    wrapper, kind_key = _SECTIONS[section]
    outer = Fields(item)
    body_node = outer.get(wrapper)
    outer.finish()
    if not outer.valid:
        return None
    if body_node is None:
        item.report(f"missing required key '{wrapper}' (with 'meta' and 'spec')")
        return None
    body = Fields(body_node)
    meta_node, spec_node = body.get("meta"), body.get("spec")
    body.finish()
    if not body.valid:
        return None
    if meta_node is None:
        body_node.report(f"missing required key 'meta' (with '{kind_key}')")
        return None
    meta = Fields(meta_node)
    kind_node = meta.get(kind_key)
    id_node = meta.get("id") if wrapper != "endpoint" else None
    meta.finish()
    if not meta.valid:
        return None
    if kind_node is None or not isinstance(kind_node.value, str):
        meta_node.report(f"missing required key '{kind_key}'" if kind_node is None else f"expected a kind name, got {describe(kind_node.value)}")
        return None
    kind = LEGACY_KINDS.get(kind_node.value, kind_node.value)
    if kind not in KINDS:
        kind_node.report(unknown_kind_message(kind) + f", or a legacy one: {', '.join(LEGACY_KINDS)}")
        return None
    ctx = item.ctx.for_component(kind, f"document {item.ctx.document.number}, {format_path(item.path)}")
    if spec_node is None:
        ctx.report(body_node.path, "missing required key 'spec'")
        return None
    spec = Node(ctx, spec_node.value, spec_node.path)
    extra = {}
    if id_node is not None:
        if isinstance(spec.value, dict) and "id" in spec.value:
            ctx.report((*spec.path, "id"), "the id is given in meta.id already: remove it here")
        extra["id"] = Node(ctx, id_node.value, id_node.path)
    component = parse_spec(kind, spec, extra)
    return (component, spec) if component is not None else None
