"""The generated reference pages of the docs site: the CLI and the admin API, read from their own definitions.

``python -m pystatefun.docs_reference`` rewrites ``docs/reference/cli.md`` (from the click command tree of
``pystatefun.cli``) and ``docs/reference/admin-api.md`` (from the OpenAPI document in
``pystatefun.admin.openapi``). A test compares the committed pages with what this module produces, so the
reference cannot drift from the code.
"""

from __future__ import annotations

import inspect
import pathlib
import re
import sys
import typing

import click

from pystatefun.admin.openapi import OPENAPI
from pystatefun.cli import main as cli_main

COMMAND = ".venv/bin/python -m pystatefun.docs_reference"
PAGES = ("reference/cli.md", "reference/admin-api.md")

_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _banner(source: str) -> str:
    return f"<!-- Generated from {source} by `{COMMAND}`: edit the code, not this page. -->\n"


def _escape(text: str) -> str:
    """Markdown-safe prose: help texts say `<app>`, `{"error": ...}` and `|` and mean them literally.

    Backtick spans are kept as code (the docstrings use them on purpose); outside them, HTML and the
    characters that start emphasis, links or table cells are escaped.
    """
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part.replace("|", "\\|"))
            continue
        part = part.replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        out.append(re.sub(r"([*_\[\]|])", r"\\\1", part))
    return "".join(out)


def _cell(text: str) -> str:
    """One table cell: a single line."""
    return _escape(" ".join(text.split()))


def _code(value: object) -> str:
    """A value as inline code; an empty string shows as "" rather than as an empty (broken) code span."""
    text = str(value).replace("|", "\\|") or '""'
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


# -- the CLI ---------------------------------------------------------------------------------------------

def _help_text(command: click.Command) -> str:
    """The command's help as click shows it: up to a \\f, without the \\b no-rewrap markers."""
    # cleandoc: a docstring's continuation lines are indented, which Markdown would read as code
    help_text = inspect.cleandoc((command.help or "").split("\f", 1)[0])
    lines = [line for line in help_text.splitlines() if line.strip() != "\b"]
    return _escape("\n".join(lines).strip())


def _range(info: dict[str, typing.Any]) -> str:
    low, high = info.get("min"), info.get("max")
    lower = "" if low is None else f"{low} {'&lt;' if info.get('min_open') else '≤'} "
    upper = "" if high is None else f" {'&lt;' if info.get('max_open') else '≤'} {high}"
    return f"{lower}x{upper}"


def _option_type(info: dict[str, typing.Any]) -> str:
    if info["is_flag"]:
        return "flag"
    kind = info["type"]
    if kind["param_type"] == "Choice":
        text = "one of " + ", ".join(_code(choice) for choice in kind["choices"])
    elif kind["param_type"] in ("IntRange", "FloatRange"):
        text = f"{'integer' if kind['param_type'] == 'IntRange' else 'float'}, {_range(kind)}"
    else:
        text = _escape(kind["name"])
    return text + (", repeatable" if info["multiple"] else "")


def _option_default(info: dict[str, typing.Any]) -> str:
    if info["required"]:
        return "required"
    if info["is_flag"]:
        return "on" if info["default"] else "off"
    # an option whose value may be left out (--wait alone) takes its flag_value then
    alone = "" if info["flag_value"] is None else f"; {_code(info['flag_value'])} when given without a value"
    default = "none" if info["default"] is None else _code(info["default"])
    return default + alone


def _envvar(envvar: str | typing.Sequence[str] | None) -> str:
    if not envvar:
        return "—"
    names = [envvar] if isinstance(envvar, str) else list(envvar)
    return ", ".join(_code(name) for name in names)


def _command_section(command: click.Command, ctx: click.Context) -> list[str]:
    path = ctx.command_path
    lines = [f"## {path}", "", "```", f"{path} {' '.join(command.collect_usage_pieces(ctx))}", "```", ""]
    if command.help:
        lines += [_help_text(command), ""]
    params = [param for param in command.get_params(ctx) if not getattr(param, "hidden", False)]
    arguments = [param for param in params if isinstance(param, click.Argument)]
    options = [param for param in params if isinstance(param, click.Option)]
    if arguments:
        lines += ["| argument | required |", "|---|---|"]
        for argument in arguments:
            lines.append(f"| {_code(argument.make_metavar(ctx))} | {'yes' if argument.required else 'no'} |")
        lines.append("")
    if options:
        lines += ["| option | type | default | environment variable | description |", "|---|---|---|---|---|"]
        for option in options:
            info = option.to_info_dict()
            names = ", ".join(_code(name) for name in [*option.opts, *option.secondary_opts])
            if option.metavar:
                names += f" {_code(option.metavar)}"
            lines.append(f"| {names} | {_option_type(info)} | {_option_default(info)} | {_envvar(option.envvar)} "
                         f"| {_cell(option.help or '')} |")
        lines.append("")
    if isinstance(command, click.Group):
        subcommands = _subcommands(command, ctx)
        lines += ["| command | what it does |", "|---|---|"]
        for sub, sub_ctx in subcommands:
            anchor = sub_ctx.command_path.replace(" ", "-")
            lines.append(f"| [{sub_ctx.info_name}](#{anchor}) | {_cell(sub.get_short_help_str(limit=1000))} |")
        lines.append("")
        for sub, sub_ctx in subcommands:
            lines += _command_section(sub, sub_ctx)
    return lines


def _subcommands(group: click.Group, ctx: click.Context) -> list[tuple[click.Command, click.Context]]:
    found = []
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            found.append((sub, click.Context(sub, info_name=name, parent=ctx)))
    return found


def cli_reference(command: click.Command = cli_main, name: str = "pystatefun") -> str:
    """The CLI reference page: every command with its usage, help and options, from the click objects."""
    ctx = click.Context(command, info_name=name)
    lines = [
        _banner("the click command tree of src/pystatefun/cli.py").rstrip("\n"),
        "",
        "# CLI reference",
        "",
        f"Every command of `{name}` with its options, as `{name} COMMAND --help` shows them. Options that name an "
        "environment variable read it when the option is not given.",
        "",
        *_command_section(command, ctx),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


# -- the admin API ---------------------------------------------------------------------------------------

def _schema(schema: dict[str, typing.Any] | None) -> str:
    """A schema in a few words, linking named schemas to their section below."""
    if not schema:
        return "any"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "enum" in schema:
        return "one of " + ", ".join(_code(value) for value in schema["enum"])
    kinds = schema.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    words = []
    for kind in kinds:
        if kind == "array":
            words.append(f"array of {_schema(schema.get('items'))}")
        elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            words.append(f"object of name → {_schema(schema['additionalProperties'])}")
        else:
            words.append(str(kind))
    text = " or ".join(words)
    if "minimum" in schema or "maximum" in schema:
        text += ", " + _range({"min": schema.get("minimum"), "max": schema.get("maximum")})
    return text


def _content(content: dict[str, typing.Any] | None) -> str:
    if not content:
        return "—"
    return "; ".join(f"{_code(media)}: {_schema(body.get('schema'))}" if body.get("schema") else _code(media)
                     for media, body in content.items())


def _operation_section(path: str, method: str, operation: dict[str, typing.Any],
                       shared_parameters: list[dict[str, typing.Any]]) -> list[str]:
    lines = [f"## {method.upper()} {path}", ""]
    for key in ("summary", "description"):
        if operation.get(key):
            lines += [_escape(operation[key]), ""]
    parameters = [*shared_parameters, *operation.get("parameters", [])]
    if parameters:
        lines += ["| parameter | in | type | required | default | description |", "|---|---|---|---|---|---|"]
        for parameter in parameters:
            schema = parameter.get("schema", {})
            default = _code(schema["default"]) if "default" in schema else "—"
            lines.append(f"| {_code(parameter['name'])} | {parameter['in']} | {_schema(schema)} "
                         f"| {'yes' if parameter.get('required') else 'no'} | {default} "
                         f"| {_cell(parameter.get('description', ''))} |")
        lines.append("")
    body = operation.get("requestBody")
    if body:
        required = "required" if body.get("required") else "optional"
        lines += [f"Request body ({required}): {_content(body.get('content'))}", ""]
    lines += ["| status | description | content |", "|---|---|---|"]
    for status, response in operation["responses"].items():
        lines.append(f"| {status} | {_cell(response.get('description', ''))} | {_content(response.get('content'))} |")
    lines.append("")
    return lines


def admin_api_reference(document: dict[str, typing.Any] = OPENAPI) -> str:
    """The admin API reference page: every path and method of the OpenAPI document, then its schemas."""
    info = document["info"]
    lines = [
        _banner("the OpenAPI document in src/pystatefun/admin/openapi.py").rstrip("\n"),
        "",
        "# Admin API reference",
        "",
        f"{_escape(info['title'])}, version {_escape(str(info['version']))} (OpenAPI {document['openapi']}). "
        "A running application serves this document at `GET /openapi.json`.",
        "",
        _escape(info.get("description", "")),
        "",
        "| method | path | summary |",
        "|---|---|---|",
    ]
    operations = []
    for path, item in document["paths"].items():
        for method in _HTTP_METHODS:
            if method in item:
                operations.append((path, method, item[method], item.get("parameters", [])))
                lines.append(f"| {method.upper()} | {_code(path)} | {_cell(item[method].get('summary', ''))} |")
    lines.append("")
    for path, method, operation, shared in operations:
        lines += _operation_section(path, method, operation, shared)
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        lines += ["## Schemas", ""]
        for name, schema in schemas.items():
            lines += [f"### {name}", ""]
            if schema.get("description"):
                lines += [_escape(schema["description"]), ""]
            properties = schema.get("properties", {})
            required = set(schema.get("required", []))
            lines += ["| property | type | required | description |", "|---|---|---|---|"]
            for prop, prop_schema in properties.items():
                lines.append(f"| {_code(prop)} | {_schema(prop_schema)} | {'yes' if prop in required else 'no'} "
                             f"| {_cell(prop_schema.get('description', ''))} |")
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def generate() -> dict[str, str]:
    """The generated pages, by their path under docs/."""
    return {PAGES[0]: cli_reference(), PAGES[1]: admin_api_reference()}


def write(docs_dir: pathlib.Path) -> list[pathlib.Path]:
    """Write the generated pages under docs_dir; returns the pages whose content changed."""
    changed = []
    for relative, text in generate().items():
        page = docs_dir / relative
        if not page.exists() or page.read_text(encoding="utf-8") != text:
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(text, encoding="utf-8")
            changed.append(page)
    return changed


def main() -> None:
    docs_dir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path("docs")
    if not docs_dir.is_dir():
        raise SystemExit(f"{docs_dir} is not a directory: run this from the repository root, or give the docs directory")
    changed = write(docs_dir)
    print(f"updated {', '.join(map(str, changed))}" if changed else "the reference pages are up to date")


if __name__ == "__main__":
    main()
