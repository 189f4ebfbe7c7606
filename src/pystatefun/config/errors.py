"""The one error a module file can raise, and the problems it lists.

A configuration mistake found only when the first message arrives costs a restart loop in production,
so loading checks everything up front and reports every problem of a file at once, each one naming the
file, the document, the component kind, the key path and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a module file.

    ``document`` is the 1-based position of the YAML document in the file (``None`` for problems of the
    file as a whole, e.g. malformed YAML), ``kind`` the component kind when known, ``path`` the key path
    inside the document (``spec.transport.call``, ``spec.topics[0].targets``), ``line`` the 1-based line.
    """

    file: str
    message: str
    document: int | None = None
    kind: str | None = None
    path: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.document is not None:
            where += f", document {self.document}"
            if self.kind:
                where += f" ({self.kind})"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{text} [line {self.line}]" if self.line is not None else text


class ModuleConfigError(ValueError):
    """A module file that cannot be used as it is; ``problems`` lists everything found wrong in it."""

    def __init__(self, problems: list[ConfigProblem]):
        if not problems:
            raise ValueError("a ModuleConfigError needs at least one problem")
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        super().__init__(self._message())

    def _message(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems in {self.problems[0].file}:"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)
