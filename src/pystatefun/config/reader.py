"""Strict reading of one component's keys: every problem is recorded with its key path, none stops the rest.

StateFun ignores keys it does not know, so ``urlPathTemplat:`` or a ``timeouts`` block in the wrong place
silently falls back to defaults. pystatefun rejects them instead: each mapping is read through a
``Fields``, which remembers the keys asked for and reports every other one as unknown (with a
"did you mean"). Value parsers are plain functions ``Node -> value`` that raise ``Invalid``; the reader
attaches the location, records the problem and carries on, so one load reports all problems of a file.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from pystatefun.config.durations import format_duration, parse_duration
from pystatefun.config.errors import ConfigProblem
from pystatefun.config.source import Document, KeyPath, format_path

T = typing.TypeVar("T")
Parser = typing.Callable[["Node"], T]


class Invalid(ValueError):
    """Raised by a value parser: the message says what is wrong with the value and what would be right."""


class Reported(Exception):
    """Raised by a parser of a nested value whose problems it has already recorded one by one."""


@dataclass
class Context:
    """Where a component comes from (file, document, kind, folder) and where its problems go.

    ``suppressed`` holds key paths already reported (an unset ``${VAR}``), so that the value left there
    does not add a second, confusing problem. ``where`` overrides the document as the component's
    origin (the legacy format has several components in one document).
    """

    file: str
    document: Document
    kind: str | None
    base_dir: Path
    problems: list[ConfigProblem]
    suppressed: set[KeyPath] = field(default_factory=set)
    where: str | None = None

    def report(self, path: KeyPath, message: str) -> None:
        if path in self.suppressed:
            return
        self.problems.append(
            ConfigProblem(self.file, message, self.document.number, self.kind, format_path(path), self.document.line_of(path))
        )

    def for_component(self, kind: str, where: str) -> Context:
        """A context for one of several components of this document."""
        return dataclasses.replace(self, kind=kind, where=where)

    @property
    def origin(self) -> str:
        """How messages refer to this component: ``document 2 (io.statefun.endpoints.v2/http)``."""
        return f"{self.where or f'document {self.document.number}'} ({self.kind})"


@dataclass
class Node:
    """A value in a document and its key path."""

    ctx: Context
    value: typing.Any
    path: KeyPath

    def child(self, key: str | int, value: typing.Any) -> Node:
        return Node(self.ctx, value, (*self.path, key))

    def report(self, message: str) -> None:
        self.ctx.report(self.path, message)

    def parse(self, parser: Parser[T]) -> T | None:
        """``parser(self)``, or ``None`` after recording the problem if the value is invalid."""
        try:
            return parser(self)
        except Invalid as e:
            self.report(str(e))
        except Reported:
            pass
        return None


class Fields:
    """The keys of one mapping. Ask for each allowed key, then call ``finish()`` to report the others."""

    def __init__(self, node: Node, extra: dict[str, Node] | None = None):
        self.node = node
        self.valid = isinstance(node.value, dict)
        if not self.valid:
            node.report(f"expected a mapping of keys to values, got {describe(node.value)}")
        self._data: dict = node.value if self.valid else {}
        self._extra = extra or {}
        self._asked: list[str] = []

    def has(self, key: str) -> bool:
        """Whether ``key`` is given (``null`` counts as not given, as in ``get``)."""
        return self.get(key) is not None

    def given_null(self, key: str) -> bool:
        """Whether ``key`` is given as an explicit ``null``, for the keys where null means "no limit"."""
        self._ask(key)
        return key in self._data and self._data[key] is None

    def get(self, key: str) -> Node | None:
        """The node of ``key``, or ``None`` if absent (an explicit ``null`` counts as absent)."""
        self._ask(key)
        if key in self._extra:
            return self._extra[key]
        value = self._data.get(key)
        return None if value is None else self.node.child(key, value)

    def optional(self, key: str, parser: Parser[T], default: T) -> T:
        """The parsed value of ``key``; ``default`` when it is absent or invalid (the problem is recorded)."""
        node = self.get(key)
        if node is None:
            return default
        parsed = node.parse(parser)
        return default if parsed is None else parsed

    def required(self, key: str, parser: Parser[T], example: str = "") -> T | None:
        """The parsed value of ``key``; ``None`` when it is missing or invalid (the problem is recorded)."""
        node = self.get(key)
        if node is None:
            if self.valid:
                hint = f", e.g. {key}: {example}" if example else ""
                present = " (it is null)" if key in self._data else ""
                self.node.report(f"missing required key '{key}'{present}{hint}")
            return None
        return node.parse(parser)

    def finish(self, hints: typing.Mapping[str, str] | None = None) -> None:
        """Reports every key that was not asked for, with a hint where one is known."""
        unasked = [(key, self.node.child(str(key), None)) for key in self._data if key not in self._asked]
        unasked += [(key, node) for key, node in self._extra.items() if key not in self._asked]
        for key, where in unasked:
            if hints and key in hints:
                where.report(f"key '{key}' is not allowed here: {hints[key]}")
                continue
            close = difflib.get_close_matches(str(key), self._asked, n=1, cutoff=0.75)
            guess = f"did you mean '{close[0]}'? " if close else ""
            allowed = ", ".join(self._asked) if self._asked else "none"
            where.report(f"unknown key '{key}' ({guess}allowed keys: {allowed})")

    def keys(self) -> list[str]:
        """The keys present in the mapping."""
        return [str(key) for key in self._data]

    def allow(self, *keys: str) -> None:
        """Accepts ``keys`` without reading them (e.g. the keys of every variant when the ``type`` that
        selects one is itself wrong, so that only the type is reported)."""
        for key in keys:
            self._ask(key)

    def _ask(self, key: str) -> None:
        if key not in self._asked:
            self._asked.append(key)


def describe(value: typing.Any) -> str:
    """A short description of a YAML value for messages: "the string 'x'", "a list", ..."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


# -- value parsers ------------------------------------------------------------------------------------


def string(node: Node) -> str:
    """A non-empty string. Numbers are taken as written (``topic: 2024``); booleans are refused, since
    YAML turns an unquoted ``true`` into one and the intended string is then lost."""
    value = node.value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        hint = " (quote it if it is meant as a string)" if isinstance(value, bool) else ""
        raise Invalid(f"expected a string, got {describe(value)}{hint}")
    text = str(value)
    if not text.strip():
        raise Invalid("expected a non-empty string")
    return text


def integer(minimum: int, maximum: int) -> Parser[int]:
    """A whole number in ``[minimum, maximum]``; a string of digits counts (``port: ${PORT}`` is one).
    Both bounds are required: no number in a module file is unbounded."""

    def parse(node: Node) -> int:
        value = node.value
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected a whole number, got {describe(node.value)}")
        if value < minimum:
            raise Invalid(f"{value} is too small: use a number from {minimum} to {maximum}")
        if value > maximum:
            raise Invalid(f"{value} is too large: the maximum is {maximum}")
        return value

    return parse


def boolean(node: Node) -> bool:
    """``true`` or ``false`` (YAML's booleans; the strings "true" and "false" too, as ``${VAR}`` gives)."""
    value = node.value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {describe(value)}")
    return value


def duration(maximum: timedelta, positive: bool = False) -> Parser[timedelta]:
    """A duration in Flink syntax (``2 min``, ``30s``, ``500ms``; a bare number is milliseconds), at most
    ``maximum`` (required: no duration in a module file is unbounded)."""

    def parse(node: Node) -> timedelta:
        try:
            value = parse_duration(node.value)
        except ValueError as e:
            raise Invalid(str(e)) from None
        if positive and not value:
            raise Invalid("must be longer than 0 (use e.g. '2 min', '30s', '500ms')")
        if value > maximum:
            raise Invalid(f"{format_duration(value)} is longer than the maximum, {format_duration(maximum)}")
        return value

    return parse


def choice(*allowed: str, case_sensitive: bool = True) -> Parser[str]:
    """One of ``allowed`` (returned in the spelling of ``allowed``)."""

    def parse(node: Node) -> str:
        text = string(node)
        for option in allowed:
            if text == option or not case_sensitive and text.lower() == option.lower():
                return option
        raise Invalid(f"{text!r} is not one of: {', '.join(allowed)}")

    return parse


def typename(node: Node) -> str:
    """A typename ``namespace/name`` as StateFun's runtime parses it: exactly one '/', both sides non-empty."""
    text = string(node)
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise Invalid(f"{text!r} is not a typename: write '<namespace>/<name>', e.g. 'com.example/greeter'")
    return text


def value_typename(node: Node) -> str:
    """A message typename as the SDKs parse it (split at the last '/'), e.g.
    ``type.googleapis.com/com.example.Greeting`` or ``com.example/GreetRequest``."""
    text = string(node)
    namespace, sep, name = text.rpartition("/")
    if not sep or not namespace or not name:
        raise Invalid(f"{text!r} is not a type name: write '<namespace>/<name>', e.g. 'com.example/GreetRequest'")
    return text


def sequence(item: Parser[T], *, nonempty: bool = False, example: str = "") -> Parser[tuple[T, ...]]:
    """A list whose items are each read with ``item``; invalid items are reported one by one."""

    def parse(node: Node) -> tuple[T, ...]:
        if not isinstance(node.value, list):
            hint = f", e.g. [{example}]" if example else ""
            raise Invalid(f"expected a list, got {describe(node.value)}{hint}")
        if nonempty and not node.value:
            raise Invalid(f"must list at least one item{f', e.g. [{example}]' if example else ''}")
        items = [node.child(index, value).parse(item) for index, value in enumerate(node.value)]
        return tuple(parsed for parsed in items if parsed is not None)

    return parse


def properties(node: Node) -> dict[str, str]:
    """Client properties as StateFun writes them: a list of single-key maps, ``- bootstrap.servers: kafka:9092``."""
    if not isinstance(node.value, list):
        raise Invalid(f"expected a list of single-key maps like '- group.id: my-group', got {describe(node.value)}")
    result: dict[str, str] = {}
    for index, entry in enumerate(node.value):
        item = node.child(index, entry)
        if not isinstance(entry, dict) or len(entry) != 1:
            item.report(f"expected a single-key map like '- group.id: my-group', got {describe(entry) if not isinstance(entry, dict) else f'{len(entry)} keys'}")
            continue
        ((key, value),) = entry.items()
        if isinstance(value, bool):
            value = str(value).lower()
        if key in result:
            item.report(f"property '{key}' is given twice")
        text = item.child(str(key), value).parse(string)
        if text is not None:
            result[str(key)] = text
    return result


def file_path(node: Node) -> Path:
    """An existing file: a path (relative to the module file's folder) or a ``file:`` URL."""
    text = string(node)
    if text.startswith("classpath:"):
        raise Invalid(f"{text!r}: there is no Java classpath in pystatefun; give a file path (relative to the module file's folder) or a file: URL")
    if text.startswith("file:"):
        parsed = urllib.parse.urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise Invalid(f"{text!r}: a file: URL must name a local file, e.g. file:///etc/certs/ca.pem")
        text = urllib.request.url2pathname(parsed.path)
    path = Path(text).expanduser()
    resolved = path if path.is_absolute() else node.ctx.base_dir / path
    if not resolved.is_file():
        relative = f" (relative to {node.ctx.base_dir})" if not path.is_absolute() else ""
        raise Invalid(f"file not found: {resolved}{relative}")
    return resolved
