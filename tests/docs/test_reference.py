"""The generated reference pages (CLI, admin API) match the code, and show every command, option and route."""

from __future__ import annotations

import pathlib
import typing

import click

from pystatefun.admin.openapi import OPENAPI
from pystatefun.cli import main
from pystatefun.docs_reference import COMMAND, admin_api_reference, cli_reference, generate

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"


def _sections(page: str) -> dict[str, str]:
    """The page's `## ` sections by heading."""
    sections = {}
    for chunk in page.split("\n## ")[1:]:
        heading, _, body = chunk.partition("\n")
        sections[heading] = body
    return sections


def test_the_committed_reference_pages_are_what_the_code_defines_now() -> None:
    stale = [relative for relative, text in generate().items()
             if not (DOCS / relative).exists() or (DOCS / relative).read_text(encoding="utf-8") != text]
    assert not stale, (f"{', '.join('docs/' + page for page in stale)} differ from what the code defines now: "
                       f"run `{COMMAND}` from the repository root and commit the result")


def test_each_page_says_it_is_generated_and_by_which_command() -> None:
    for text in generate().values():
        first = text.splitlines()[0]
        assert "Generated" in first and COMMAND in first


def _commands(info: dict[str, typing.Any], path: str) -> typing.Iterator[tuple[str, dict[str, typing.Any]]]:
    yield path, info
    for name, sub in info.get("commands", {}).items():
        if not sub["hidden"]:
            yield from _commands(sub, f"{path} {name}")


def test_every_cli_command_and_option_is_on_the_page_with_its_default_and_environment_variable() -> None:
    sections = _sections(cli_reference())
    tree = main.to_info_dict(click.Context(main, info_name="pystatefun"))
    commands = list(_commands(tree, "pystatefun"))
    assert {"pystatefun run", "pystatefun send", "pystatefun serve"} <= {path for path, _ in commands}
    for path, info in commands:
        assert path in sections, f"{path} is not on the CLI reference page"
        rows = {line.split(" | ")[0].lstrip("| "): line for line in sections[path].splitlines() if line.startswith("| `-")}
        for param in info["params"]:
            if param["param_type_name"] != "option" or param["hidden"]:
                continue
            row = next((line for names, line in rows.items() if f"`{param['opts'][0]}`" in names), None)
            assert row is not None, f"{path} {param['opts'][0]} is not on the CLI reference page"
            if param["envvar"]:
                assert f"`{param['envvar']}`" in row
            if isinstance(param["default"], (str, int)) and not param["is_flag"] and param["default"] != "":
                assert f"`{param['default']}`" in row


def test_the_cli_page_shows_help_text_literally() -> None:
    @click.group()
    def tool() -> None:
        """A tool."""

    @tool.command()
    @click.option("--topic", default="", show_default=True, help="Writes to <app>.messages | or *not*.")
    def go(topic: str) -> None:
        """Go to `<app>` now.

        A second paragraph, indented in the docstring.
        """

    page = cli_reference(tool, "tool")
    # the angle brackets, pipe and asterisks would otherwise be an HTML tag, a table cell and emphasis
    assert r"Writes to &lt;app&gt;.messages \| or \*not\*." in page
    assert "Go to `<app>` now." in page  # code spans stay code
    # indented by four in the docstring, it would be a code block in Markdown
    assert "\n\nA second paragraph, indented in the docstring." in page
    assert '| `--topic` | text | `""` |' in page  # an empty default is still a visible value


def test_every_admin_route_is_on_the_page_with_its_parameters_and_responses() -> None:
    sections = _sections(admin_api_reference())
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            section = sections.get(f"{method.upper()} {path}")
            assert section is not None, f"{method.upper()} {path} is not on the admin API reference page"
            for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
                assert f"| `{parameter['name']}` | {parameter['in']} |" in section
            for status in operation["responses"]:
                assert f"\n| {status} |" in section
    for name in OPENAPI["components"]["schemas"]:
        assert f"### {name}" in sections["Schemas"]
