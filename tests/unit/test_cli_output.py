"""How the operations CLI prints parked addresses and dead letters: on a terminal, a table of one line per
entry with each multi-line reason (a traceback) whole below it; piped, one escaped row per entry."""

from __future__ import annotations

import io

from rich.console import Console

from pystatefun.cli_output import Output

PARKED = [
    {"address": "ex/f/a", "waiting_messages": 3,
     "reason": 'ex/f/a raised KeyError: \'x\'\nTraceback (the last 1 frames, most recent call last):\n'
               '  File "functions.py", line 7, in f\n    context.storage.x["x"]'},
    {"address": "ex/f/b", "waiting_messages": 1, "reason": "a state type mismatch"},
]


def terminal_output() -> tuple[Output, io.StringIO]:
    output = Output()
    screen = io.StringIO()
    output.console = Console(file=screen, width=120, force_terminal=True, color_system=None, highlight=False)
    output.terminal = True
    return output, screen


def test_a_terminal_shows_first_lines_in_the_table_and_tracebacks_whole_below_it():
    output, screen = terminal_output()
    output.parked(PARKED)
    text = screen.getvalue()
    table, _, below = text.partition("┘")  # the table (to its bottom right corner), then what follows it
    assert "ex/f/a raised KeyError: 'x' (more below)" in table and "a state type mismatch" in table
    assert "Traceback" not in table
    assert "ex/f/a\nex/f/a raised KeyError: 'x'\nTraceback (the last 1 frames" in below
    assert '  File "functions.py", line 7, in f\n    context.storage.x["x"]' in below
    assert "ex/f/b" not in below  # a one-line reason is all in the table


def test_piped_output_is_one_escaped_row_per_entry(capsys):
    output = Output()
    output.terminal = False
    output.parked(PARKED)
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2
    assert rows[0].startswith("ex/f/a\t3\tex/f/a raised KeyError: 'x'\\nTraceback")
    assert rows[1] == "ex/f/b\t1\ta state type mismatch"
