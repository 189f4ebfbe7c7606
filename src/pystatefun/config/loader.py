"""``load_module``: a module file in, a validated ``Module`` out, or one error listing every problem.

The steps: read the YAML documents (with lines), substitute ``${VAR}``, read each component (or the
legacy 3.0 document), then check what only the whole file can show: a function type or namespace bound
twice, two ingresses or egresses with one id, two playground servers on one port, ingress targets that
nothing serves.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path

from pystatefun.config.components import parse_document
from pystatefun.config.errors import ConfigProblem, ModuleConfigError
from pystatefun.config.interpolation import interpolate
from pystatefun.config.legacy import is_legacy, parse_legacy
from pystatefun.config.model import (
    Component,
    EmbeddedFunctions,
    HttpEndpoint,
    KafkaEgress,
    KafkaIngress,
    KinesisEgress,
    KinesisIngress,
    Module,
    PlaygroundEgress,
    PlaygroundIngress,
)
from pystatefun.config.reader import Context, Node
from pystatefun.config.source import Document, YamlLimitError, YamlSyntaxError, read_documents

MAX_MODULE_BYTES = 16 * 2**20  # a module file is read whole into memory, and composed before it is checked

_INGRESSES = (PlaygroundIngress, KafkaIngress, KinesisIngress)
_EGRESSES = (PlaygroundEgress, KafkaEgress, KinesisEgress)


def load_module(path: str | Path, env: typing.Mapping[str, str] | None = None) -> Module:
    """Reads and validates the module file at ``path``.

    Both StateFun formats are read: the component format (one ``{kind, spec}`` per YAML document) and
    the legacy single-document ``version: "3.0"`` format. ``${VAR}`` and ``${VAR:-default}`` in string
    values are substituted from ``env`` (default: ``os.environ``). Relative file paths in the module are
    resolved against its folder. Raises ``ModuleConfigError`` listing every problem found.
    """
    path = Path(path)
    file = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MODULE_BYTES + 1)  # no more: the file may be endless (a pipe, /dev/zero)
        if len(data) > MAX_MODULE_BYTES:
            raise ModuleConfigError([ConfigProblem(
                file, f"the module file is larger than {MAX_MODULE_BYTES // 2**20} MiB: split it or remove what is not needed")])
        text = data.decode("utf-8-sig")  # tolerate a byte-order mark
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ModuleConfigError([ConfigProblem(file, f"cannot read the module file: {reason}")]) from None
    try:
        documents = read_documents(text)
    except (YamlSyntaxError, YamlLimitError) as e:
        at = f" at line {e.line}, column {e.column}" if e.line is not None else ""
        what = "malformed YAML" if isinstance(e, YamlSyntaxError) else "YAML beyond pystatefun's limits"
        raise ModuleConfigError([ConfigProblem(file, f"{what}{at}: {e}")]) from None

    base_dir = path.absolute().parent
    problems: list[ConfigProblem] = []
    roots = [_prepare(document, file, base_dir, problems, os.environ if env is None else env) for document in documents]
    roots = [root for root in roots if root.value is not None]  # null documents, e.g. after a trailing ---
    if not roots:
        problems.append(ConfigProblem(file, "the file has no components: add a document like 'kind: io.statefun.endpoints.v2/http' with its 'spec'"))
        raise ModuleConfigError(problems)

    if len(roots) == 1 and is_legacy(roots[0].value):
        components = parse_legacy(roots[0])
    else:
        components = [parsed for root in roots if (parsed := parse_document(root)) is not None]
    _check_across(components)
    if problems:
        problems.sort(key=lambda problem: problem.document or 0)  # stable: within a document, in reading order
        raise ModuleConfigError(problems)
    found = [component for component, _ in components]
    return Module(
        path=path.absolute(),
        endpoints=tuple(c for c in found if isinstance(c, HttpEndpoint)),
        embedded=tuple(c for c in found if isinstance(c, EmbeddedFunctions)),
        ingresses=tuple(c for c in found if isinstance(c, _INGRESSES)),
        egresses=tuple(c for c in found if isinstance(c, _EGRESSES)),
    )


def _prepare(document: Document, file: str, base_dir: Path, problems: list[ConfigProblem], env: typing.Mapping[str, str]) -> Node:
    """The document's root node after substitution, its duplicate keys and failed references recorded."""
    data = document.data
    kind = data.get("kind") if isinstance(data, dict) and isinstance(data.get("kind"), str) else None
    ctx = Context(file, document, kind, base_dir, problems)
    for duplicate in document.duplicate_keys:
        ctx.report(duplicate, f"key '{duplicate[-1]}' is given twice in this mapping (YAML would keep only the last): remove one")
    document.data, failures = interpolate(data, env)
    for failure in failures:
        ctx.report(failure.path, str(failure))
        ctx.suppressed.add(failure.path)
    return Node(ctx, document.data, ())


def _check_across(components: list[tuple[Component, Node]]) -> None:
    """Problems between components, each reported at the later component, naming the earlier one."""
    bindings: dict[str, Component] = {}
    ids: dict[tuple[str, str], Component] = {}
    addresses: dict[tuple[str, int], Component] = {}
    for component, spec in components:
        if isinstance(component, (HttpEndpoint, EmbeddedFunctions)) and component.functions is not None:
            selector = str(component.functions)
            if selector in bindings:
                what = "namespace" if component.functions.is_namespace else "function type"
                spec.child("functions", None).report(
                    f"the {what} '{selector}' is already bound by {bindings[selector].origin}: bind each function type or namespace once"
                )
            bindings.setdefault(selector, component)
        if isinstance(component, _INGRESSES + _EGRESSES) and component.id is not None:
            role = "ingress" if isinstance(component, _INGRESSES) else "egress"
            if (role, component.id) in ids:
                where = spec.child("id", None) if isinstance(spec.value, dict) and "id" in spec.value else spec
                where.report(f"the {role} id '{component.id}' is already used by {ids[role, component.id].origin}: give each {role} its own id")
            ids.setdefault((role, component.id), component)
        if isinstance(component, (PlaygroundIngress, PlaygroundEgress)) and component.port:
            address = (component.host, component.port)
            if address in addresses:
                spec.child("port", None).report(f"port {component.port} on {component.host} is already used by {addresses[address].origin}: give each playground server its own port")
            addresses.setdefault(address, component)
    _check_targets(components)


def _check_targets(components: list[tuple[Component, Node]]) -> None:
    """Every function type that a Kafka or Kinesis ingress sends to must be bound by the module."""
    selectors = [c.functions for c, _ in components if isinstance(c, (HttpEndpoint, EmbeddedFunctions)) and c.functions is not None]
    for component, spec in components:
        if isinstance(component, KafkaIngress):
            key, routes = "topics", component.topics
        elif isinstance(component, KinesisIngress):
            key, routes = "streams", component.streams
        else:
            continue
        for index, route in enumerate(routes or ()):
            for target_index, target in enumerate(route.targets):
                if not any(selector.matches(target) for selector in selectors):
                    where = spec.child(key, None).child(index, None).child("targets", None).child(target_index, None)
                    where.report(
                        f"no endpoint or embedded module in this file serves the function type '{target}': "
                        f"bind it (e.g. functions: {target.rpartition('/')[0]}/*) or fix the name"
                    )
