"""Reading a module file into plain YAML documents, remembering the line of every key.

PyYAML's ``safe_load_all`` forgets where values came from and silently keeps the last of two equal keys;
this reader keeps a line index per document (so problems can say ``[line 12]``) and reports duplicate keys.
It also reads scalars the way StateFun's YAML parser does rather than by YAML 1.1 rules: only
``true``/``false`` are booleans (``on``, ``no``, ``y`` stay strings) and dates stay strings, so a Kafka
``startupPosition.date`` or a topic named ``no`` arrives as written.

Aliases are bounded as SnakeYAML (StateFun's parser) bounds them, so that a few lines of anchors cannot
expand into billions of values ("billion laughs"): at most 50 aliases to mappings or lists per document
and mappings and lists nested at most 50 deep. SnakeYAML keeps an alias as a shared reference, but every
reader here walks the values as a tree, so the expansion is bounded too (at most 1,000,000 values per
document, at most 50 deep), and an alias inside its own anchor (an endless value) is refused.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field

import yaml

KeyPath = tuple[str | int, ...]


MAX_ALIASES = 50  # aliases to mappings or lists per document: SnakeYAML's maxAliasesForCollections
MAX_DEPTH = 50  # mappings and lists nested in one another: SnakeYAML's nestingDepthLimit
MAX_VALUES = 1_000_000  # values of a document once its aliases are expanded


class YamlLimitError(ValueError):
    """A document beyond the limits above, with the 1-based line and column where it went beyond."""

    def __init__(self, message: str, line: int | None, column: int | None):
        super().__init__(message)
        self.line = line
        self.column = column


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-like booleans, no implicit timestamps, and SnakeYAML's bounds on aliases
    and nesting (counted while composing, before anything is expanded)."""

    def compose_document(self) -> yaml.Node | None:
        self._aliases = 0
        self._depth = 0
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: typing.Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if isinstance(target, (yaml.MappingNode, yaml.SequenceNode)):
                self._aliases += 1
                if self._aliases > MAX_ALIASES:
                    raise _limit(event.start_mark, f"more than {MAX_ALIASES} aliases to mappings or lists in one document "
                                 f"(StateFun's YAML parser refuses them too): write the values out, or use fewer anchors")
            return super().compose_node(parent, index)
        if not isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _limit(event.start_mark, f"mappings and lists nested more than {MAX_DEPTH} deep: flatten the document")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _limit(mark: yaml.Mark | None, message: str) -> YamlLimitError:
    return YamlLimitError(message, mark.line + 1 if mark else None, mark.column + 1 if mark else None)


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
            _check_expansion(node)
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


def _check_expansion(root: yaml.Node | None) -> None:
    """Refuses a document whose aliases expand it beyond MAX_VALUES values or MAX_DEPTH nested mappings
    and lists, or that contains itself. Each node is measured once (aliases share nodes), so this costs
    the composed size, not the expanded one."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, collections nested in it) when expanded
    open_nodes: set[int] = set()
    too_deep = f"aliases nest mappings and lists more than {MAX_DEPTH} deep: write the values out"

    def measure(node: yaml.Node, above: int) -> tuple[int, int]:
        """``above``: how many mappings and lists hold ``node`` once expanded."""
        known = measured.get(id(node))
        if known is None:
            if id(node) in open_nodes:
                raise _limit(node.start_mark, "an alias inside its own anchor makes an endless value: refer to it from outside")
            if isinstance(node, yaml.MappingNode):
                children = [child for pair in node.value for child in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                return 1, 0
            if above >= MAX_DEPTH:  # checked before going down, so this recursion stays MAX_DEPTH deep
                raise _limit(node.start_mark, too_deep)
            open_nodes.add(id(node))
            values, height = 1, 1
            for child in children:
                child_values, child_height = measure(child, above + 1)
                values += child_values
                height = max(height, child_height + 1)
                if values > MAX_VALUES:
                    raise _limit(node.start_mark, f"aliases expand this document to more than {MAX_VALUES:,} values: "
                                 f"write out only what is needed")
            open_nodes.discard(id(node))
            known = measured[id(node)] = (values, height)
        if above + known[1] > MAX_DEPTH:
            raise _limit(node.start_mark, too_deep)
        return known

    if root is not None:
        measure(root, 0)


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
