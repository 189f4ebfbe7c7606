"""How the operations commands print: rich tables and colours on a terminal, plain lines when piped
(tab-separated rows, JSON values), so the output reads well and scripts can parse it."""

from __future__ import annotations

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

    def value(self, shown: dict[str, typing.Any]) -> None:
        """A reply or state value: the decoded value if there is one, else the bytes in base64."""
        text = json.dumps(shown["value"], ensure_ascii=False) if "value" in shown else shown["value_base64"]
        if self.terminal:
            self.console.print(Text.assemble((text, "bold"), "  ", (shown["typename"], "dim")))
        else:
            print(text)

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

    def dead_letters(self, letters: list[dict[str, typing.Any]]) -> None:
        rows = [(str(d["seq"]), d["target"], d["caller"] or "", d["typename"], d["reason"]) for d in letters]
        self._table("dead letters", ("seq", "target", "caller", "typename", "reason"), rows, empty="no dead letters")

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
                print("\t".join(row))
            return
        if not rows:
            self.console.print(Text(empty, style="dim"))
            return
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        self.console.print(table)
