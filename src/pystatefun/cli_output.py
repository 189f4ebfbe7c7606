"""How the operations commands print: rich tables and colours on a terminal, plain lines when piped
(tab-separated rows, one per line: tabs and newlines in values are escaped as \\t and \\n; JSON
values), so the output reads well and scripts can parse it."""

from __future__ import annotations

import base64
import json
import sys
import typing

from rich.console import Console
from rich.table import Table
from rich.text import Text


class Output:
    def __init__(self) -> None:
        self.console = Console(highlight=False)
        self.terminal = self.console.is_terminal

    def message(self, text: str) -> None:
        if self.terminal:
            self.console.print(Text(text, style="green"))  # Text: user data is never read as markup
        else:
            print(text)

    def reply(self, typename: str, body: bytes) -> None:
        """A function's reply as it was sent: the body's text (a JSON reply as the function wrote it), the
        value of a built-in type (its bytes are a protobuf wrapper), or base64 for other bytes."""
        from pystatefun.sdk.types import BUILTIN_TYPES

        builtin = BUILTIN_TYPES.get(typename)
        if builtin is not None:
            text = json.dumps(builtin.serializer().deserialize(body), ensure_ascii=False)
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = "base64:" + base64.b64encode(body).decode()
        if self.terminal:
            self.console.print(Text.assemble((text, "bold"), "  ", (typename, "dim")))
        else:
            sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))

    def record(self, record: bytes) -> None:
        text = record.decode(errors="replace")
        if self.terminal:
            self.console.print(text, markup=False)
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()  # tail -f into a pipe: each record as it comes

    def state(self, shown: dict[str, typing.Any]) -> None:
        rows = [
            (name, s["typename"], json.dumps(s["value"], ensure_ascii=False) if "value" in s else f"base64:{s['value_base64']}",
             "" if s["expires_at_ms"] is None else str(s["expires_at_ms"]))
            for name, s in shown["state"].items()
        ]
        self._table(f"state of {shown['address']}", ("name", "typename", "value", "expires at (ms)"), rows,
                    empty=f"{shown['address']} has no state")

    def parked(self, parked: list[dict[str, typing.Any]]) -> None:
        rows = [(p["address"], str(p["waiting_messages"]), p["reason"]) for p in parked]
        self._table("parked addresses", ("address", "waiting", "reason"), rows, empty="no parked addresses")
        self._full_reasons([(p["address"], p["reason"]) for p in parked])

    def dead_letters(self, letters: list[dict[str, typing.Any]]) -> None:
        rows = [(str(d["seq"]), d["target"], d["caller"] or "", d["typename"], d["reason"]) for d in letters]
        self._table("dead letters", ("seq", "target", "caller", "typename", "reason"), rows, empty="no dead letters")
        self._full_reasons([(f"dead letter {d['seq']}", d["reason"]) for d in letters])

    def _full_reasons(self, reasons: list[tuple[str, str]]) -> None:
        """On a terminal the table shows each reason's first line (a traceback would wrap over dozens of
        rows); the reasons that have more follow it whole, each under what it belongs to."""
        if not self.terminal:
            return
        for what, reason in reasons:
            if "\n" in reason:
                self.console.print()
                self.console.print(Text(what, style="bold"))
                self.console.print(Text(reason))

    def more(self, option: str) -> None:
        """A full page was printed: how to ask for the next one (on stderr, so a pipe gets rows only)."""
        hint = f"more may follow: run again with {option}"
        if self.terminal:
            self.console.print(Text(hint, style="dim"))
        else:
            print(hint, file=sys.stderr)

    def _table(self, title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], empty: str) -> None:
        if not self.terminal:
            for row in rows:
                print("\t".join(_cell(value) for value in row))
            return
        if not rows:
            self.console.print(Text(empty, style="dim"))
            return
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(Text(_first_line(cell)) for cell in row))
        self.console.print(table)


def _first_line(value: str) -> str:
    """A cell's text in a table: its first line, and a mark when more follows (printed below the table)."""
    first, newline, _ = value.partition("\n")
    return first + " (more below)" if newline else first


def _cell(value: str) -> str:
    """A value as one tab-separated cell: a reason spanning lines (a traceback) stays on its row, with
    backslash, tab, newline and carriage return written as \\\\, \\t, \\n and \\r."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
