"""Reading a module file into plain YAML documents, remembering the line of every key.

PyYAML's ``safe_load_all`` forgets where values came from and silently keeps the last of two equal keys;
this reader keeps a line index per document (so problems can say ``[line 12]``) and reports duplicate keys.
It also reads scalars the way StateFun's YAML parser does rather than by YAML 1.1 rules: only
``true``/``false`` are booleans (``on``, ``no``, ``y`` stay strings) and dates stay strings, so a Kafka
``startupPosition.date`` or a topic named ``no`` arrives as written.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field

import yaml

KeyPath = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-like booleans and no implicit timestamps."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


@dataclass
class Document:
    """One YAML document of a module file: its 1-based position, its value and where its keys are."""

    number: int
    data: typing.Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    duplicate_keys: list[KeyPath] = field(default_factory=list)

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one (e.g. for a missing key)."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


class YamlSyntaxError(ValueError):
    """Malformed YAML, with the 1-based line and column of the problem."""

    def __init__(self, message: str, line: int | None, column: int | None):
        super().__init__(message)
        self.line = line
        self.column = column


def read_documents(text: str) -> list[Document]:
    """Every document of ``text`` (null documents included, as ``data=None``), numbered from 1."""
    loader = _Loader(text)
    documents: list[Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            document = Document(len(documents) + 1, None)
            _index(node, (), document, set())
            document.data = loader.construct_document(node)
            documents.append(document)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = " ".join(part for part in (e.context, e.problem) if part) or "malformed YAML"
        raise YamlSyntaxError(problem, mark.line + 1 if mark else None, mark.column + 1 if mark else None) from None
    except yaml.YAMLError as e:  # e.g. a control character in the stream
        raise YamlSyntaxError(str(e), None, None) from None
    finally:
        loader.dispose()
    return documents


def _index(node: yaml.Node, path: KeyPath, document: Document, active: set[int]) -> None:
    """Records the line of ``node`` and everything under it; ``active`` guards against recursive aliases."""
    document.lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in active:
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[typing.Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                # `<<: *defaults` — the merged keys live at this path too, unless given here as well
                for merged in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                    _index(merged, path, document, active)
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            if key in seen:
                document.duplicate_keys.append((*path, key))
            seen.add(key)
            document.lines[(*path, key)] = key_node.start_mark.line + 1
            _index(value_node, (*path, key), document, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, (*path, index), document, active)
    active.discard(id(node))


def format_path(path: KeyPath) -> str:
    """``("spec", "topics", 0, "targets")`` -> ``spec.topics[0].targets``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
