"""``pystatefun savepoint``: look into a savepoint and transform one (savepoints/format.py, transform.py).

Every command takes a local path or a URL (``file://``, ``s3://`` with the ``s3`` extra); errors are one
line. Long reads show a progress bar on a terminal (on stderr, so stdout stays the command's output).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sqlite3
import sys
import time
import typing

import click

from pystatefun.cli_output import Output

if typing.TYPE_CHECKING:
    from pystatefun.savepoints.format import Manifest, SavepointReader


@click.group()
def savepoint() -> None:
    """Savepoints: an application at a consistent point in one file (a path, or a file:// or s3:// URL).

    Inspect one, or transform its state (rename a state, change its type) on the way to a restore with
    `pystatefun run MODULE.yaml --from-savepoint PATH`.
    """
    # what a long command waits for (a consumer group's members to leave) shows on stderr; the storage
    # libraries' own INFO lines do not
    logger = logging.getLogger("pystatefun.savepoints")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


@contextlib.contextmanager
def _one_line(path: str) -> typing.Iterator[None]:
    """A savepoint that cannot be read (missing, not a savepoint, damaged) as one line, not a traceback."""
    from pystatefun.savepoints.format import SavepointError

    try:
        yield
    except SavepointError as e:
        raise click.ClickException(str(e)) from None
    except sqlite3.DatabaseError as e:  # a query outside the reader's own checks met a damaged page
        raise click.ClickException(f"{path} is damaged: {e}; take the savepoint again or use another copy") from None


@contextlib.contextmanager
def _opened(path: str) -> typing.Iterator[SavepointReader]:
    from pystatefun.savepoints import storage
    from pystatefun.savepoints.format import SavepointReader

    with _one_line(path), storage.reading(path) as local, SavepointReader(local, describe=path) as reader:
        yield reader


@savepoint.command()
@click.argument("path")
@click.option("--admin", metavar="URL", help="Embedded backend, running: the admin API of the runtime (e.g. "
              "http://127.0.0.1:8081); PATH is then as the runtime's machine sees it.")
@click.option("--stop", is_flag=True, help="With --admin: stop the application and take the savepoint at its last "
              "commit (the cut to move or upgrade from); without it the application goes on.")
@click.option("--token", envvar="PYSTATEFUN_ADMIN_TOKEN", help="With --admin: the admin API's bearer token (or "
              "$PYSTATEFUN_ADMIN_TOKEN).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Embedded backend, stopped: the data dir.")
@click.option("--backend", type=click.Choice(["embedded", "kafka"]), default="embedded", show_default=True)
@click.option("--bootstrap-servers", envvar="PYSTATEFUN_BOOTSTRAP_SERVERS",
              help="Kafka backend: the cluster (or $PYSTATEFUN_BOOTSTRAP_SERVERS).")
@click.option("--app", "app_name", envvar="PYSTATEFUN_APP", help="Kafka backend: the application's name.")
@click.option("--module", "module_yaml", type=click.Path(exists=True, dir_okay=False),
              help="The application's module.yaml: on the Kafka backend for the positions of its Kafka ingresses; "
              "with --data-dir for what its egresses keep (needed when a Kafka egress has the playground egress's id).")
def create(path: str, admin: str | None, stop: bool, token: str | None, data_dir: str | None, backend: str,
           bootstrap_servers: str | None, app_name: str | None, module_yaml: str | None) -> None:
    """Take a savepoint at PATH: of a running embedded application (--admin URL, online or --stop), of a
    stopped one (--data-dir DIR), or of a Kafka application whose workers are stopped (--backend kafka
    --bootstrap-servers HOST:PORT --app NAME [--module MODULE.yaml])."""
    from pathlib import Path

    from pystatefun.savepoints.format import SavepointError

    chosen = [name for name, given in (("--admin", admin), ("--data-dir", data_dir),
                                       ("--backend kafka", backend == "kafka")) if given]
    if len(chosen) != 1:
        raise click.UsageError("give one of --admin URL (running), --data-dir DIR (stopped) or --backend kafka")
    if stop and not admin:
        raise click.UsageError("--stop stops a running application: it goes with --admin URL")
    try:
        if admin:
            from pystatefun.client import ApiError, RuntimeClient, Unreachable

            try:
                manifest = RuntimeClient(admin=admin, token=token).savepoint(path, stop)
            except (ApiError, Unreachable) as e:
                raise click.ClickException(str(e)) from None
            _created(path, manifest)
            return
        with progress_display() as show:
            if data_dir:
                from pystatefun.savepoints import embedded

                module = _module(module_yaml) if module_yaml else None
                kinds = embedded.egress_kinds(module) if module is not None else None
                taken = embedded.take_offline(Path(data_dir), path, lambda what, done: show(what, done, None), kinds)
            else:
                if not bootstrap_servers or not app_name:
                    raise click.UsageError("--backend kafka needs --bootstrap-servers HOST:PORT and --app NAME")
                from pystatefun.backends.kafka.client import require_kafka_client
                from pystatefun.savepoints import kafka

                try:
                    require_kafka_client("savepoint create --backend kafka")
                except RuntimeError as e:
                    raise click.ClickException(str(e)) from None
                taken = kafka.take(path, bootstrap_servers, app_name, _module(module_yaml) if module_yaml else None,
                                   progress=lambda what, done: show(what, done, None))
    except SavepointError as e:
        raise click.ClickException(str(e)) from None
    _created(path, taken.describe())


def _module(module_yaml: str) -> typing.Any:
    from pystatefun.config import ModuleConfigError, load_module

    try:
        return load_module(module_yaml)
    except ModuleConfigError as e:
        raise click.ClickException(str(e)) from None


def _created(path: str, manifest: dict[str, typing.Any]) -> None:
    counts = manifest["counts"]
    click.echo(f"savepoint {path}: {manifest['mode']}, {manifest['source_backend']} application "
               f"{manifest['application']} ({manifest['partitions']} partitions), {counts['state']} state values, "
               f"{counts['messages']} messages, {counts['timers']} delayed messages, {counts['parked']} parked; "
               f"restore it with: pystatefun run MODULE.yaml --from-savepoint {path}")


@savepoint.command()
@click.argument("path")
@click.option("--verify", is_flag=True, help="Read every row and check the manifest's checksum.")
@click.option("--list", "list_type", metavar="TYPE", help="List the ids of function TYPE (namespace/name) that have state.")
@click.option("--after", default="", help="With --list: only ids after this one, in order.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000), help="With --list: ids per page.")
@click.option("--address", metavar="NAMESPACE/TYPE/ID", help="Show the state of one address.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def inspect(path: str, verify: bool, list_type: str | None, after: str, limit: int, address: str | None,
            as_json: bool) -> None:
    """Show the savepoint at PATH: its manifest and counts per function type, the ids of one type
    (--list), or one address's state (--address)."""
    if list_type is not None and address is not None:
        raise click.UsageError("give one of --list and --address")
    if (after or limit != 100) and list_type is None:
        raise click.UsageError("--after and --limit page through --list TYPE")
    target = _split_address(address) if address is not None else None
    output = SavepointOutput()
    with _opened(path) as reader:
        verified = None
        if verify:
            with progress_display() as show:
                total = sum(reader.manifest.counts.values())
                reader.verify(lambda done: show("verifying", done, total))
            verified = sum(reader.manifest.counts.values())
        if list_type is not None:
            ids = reader.ids(list_type, after, limit)
            if as_json:
                page: dict[str, typing.Any] = {"function_type": list_type, "ids": ids}
                if len(ids) == limit:
                    page["next_after"] = ids[-1]
                _print_json(page)
            else:
                output.ids(list_type, ids)
                if len(ids) == limit:
                    output.more(f"--after {shlex.quote(ids[-1])}")
        elif target is not None:
            shown = _address_state(reader, *target)
            if as_json:
                _print_json(shown)
            else:
                output.state(shown)
        else:
            by_type = reader.counts_by_type()
            if as_json:
                described: dict[str, typing.Any] = {"path": path, "manifest": reader.manifest.describe(),
                                                    "counts_by_type": by_type}
                if verified is not None:
                    described["verified_rows"] = verified
                _print_json(described)
            else:
                output.manifest(path, reader.manifest)
                output.by_type(by_type)
                if verified is None and output.terminal:
                    output.hint("the checksum was not checked: --verify reads every row and checks it")
        if verified is not None and not as_json:
            output.message(f"verified: {verified:,} rows match the checksum")


def _split_address(address: str) -> tuple[str, str]:
    """``namespace/type/id`` -> (``namespace/type``, ``id``); the id may contain ``/``."""
    parts = address.split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise click.UsageError(f"--address {address!r} is not an address: write namespace/type/id, e.g. example/person/Bob")
    return f"{parts[0]}/{parts[1]}", parts[2]


def _address_state(reader: SavepointReader, typename: str, id: str) -> dict[str, typing.Any]:
    """One address's state as the admin API shows it (GET /state/...)."""
    from pystatefun.admin.values import describe
    from pystatefun.runtime.envelope import decode_value
    from pystatefun.savepoints.format import SavepointError

    states = {}
    for row in sorted(reader.address(typename, id), key=lambda row: row.name):
        try:
            typed = decode_value(row.value)
        except Exception as e:  # protobuf's DecodeError
            raise SavepointError(f"{reader.name} is damaged: state {row.name!r} of {typename}/{id} is not a "
                                 f"TypedValue ({e})") from None
        shown = describe(typed.typename, typed.value)
        shown["expires_at_ms"] = row.expire_at
        states[row.name] = shown
    return {"address": f"{typename}/{id}", "state": states}


def _print_json(value: typing.Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@savepoint.command()
@click.argument("source", metavar="IN")
@click.argument("target", metavar="OUT")
@click.option("--with", "reference", required=True, metavar="MODULE:FUNCTION",
              help="The function that upgrades each address's state: function(address, states) -> states.")
def transform(source: str, target: str, reference: str) -> None:
    """Write a new savepoint OUT from IN with each address's state passed through FUNCTION.

    FUNCTION(address, states) gets an address (.typename, .id) and its states, {name: SavedState}, and
    returns the states to keep (renamed, of a new type, dropped: None or {} drops them all). Everything
    else is copied. OUT must not exist; nothing is written when FUNCTION raises. The current directory is
    on the import path.
    """
    from pystatefun.loading import load_object
    from pystatefun.savepoints import storage
    from pystatefun.savepoints.transform import transform_savepoint

    with _one_line(source):
        storage.check_new(target)  # before importing the user's code or reading anything
    try:
        function = load_object(reference, search_path=os.getcwd())
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if not callable(function):
        raise click.ClickException(f"{reference} is {type(function).__name__}, not a function: give the function "
                                   f"that takes (address, states) and returns the new states")
    with _one_line(source), progress_display() as show:
        result = transform_savepoint(source, target, function, progress=show)
    output = SavepointOutput()
    output.message(f"wrote {target}: {result.addresses:,} addresses with state, {result.changed:,} changed, "
                   f"{result.dropped:,} left without state; {result.counts.get('state', 0):,} state values")
    for spec in result.dropped_specs:
        output.warning(f"left out the registered spec of state {spec.name!r} of {spec.typename} (type "
                       f"{spec.type_typename}): its values changed type, and the remote function registers it "
                       f"again on its first call")
    for (typename, name), typenames in result.mixed_types.items():
        output.warning(f"state {name!r} of {typename} has values of {len(typenames)} types now "
                       f"({', '.join(typenames)}): a function reads one type only")


@contextlib.contextmanager
def progress_display() -> typing.Iterator[typing.Callable[[str, int, int | None], None]]:
    """``show(what, done, total)``: a progress bar on a terminal (stderr), else a line every 5 s on stderr
    (a long run in a log), nothing for a short one. ``total`` None: not known in advance."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        last = [time.monotonic()]

        def line(what: str, done: int, total: int | None) -> None:
            if time.monotonic() - last[0] >= 5:
                last[0] = time.monotonic()
                click.echo(f"  {what}: {done:,}" + ("" if total is None else f" of {total:,}"), err=True)

        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    tasks: dict[str, typing.Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:

        def show(what: str, done: int, total: int | None) -> None:
            task = tasks.get(what)
            if task is None:
                task = tasks[what] = bar.add_task(what, total=total)
            bar.update(task, completed=done)

        yield show


class SavepointOutput(Output):
    """What ``savepoint inspect`` prints: rich tables on a terminal, tab-separated lines when piped."""

    def manifest(self, path: str, manifest: Manifest) -> None:
        rows = [
            ("format version", str(manifest.format_version)),
            ("application", manifest.application),
            ("source backend", manifest.source_backend),
            ("partitions", str(manifest.partitions)),
            ("created", manifest.created_at),
            ("mode", manifest.mode),
            ("checksum", manifest.checksum),
            *((f"rows: {table}", str(n)) for table, n in manifest.counts.items()),
        ]
        if not self.terminal:
            self._table("", ("", ""), rows, empty="")
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"savepoint {path}", title_justify="left", show_header=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        self.console.print(table)

    def by_type(self, by_type: dict[str, dict[str, int]]) -> None:
        columns = ("addresses", "values", "messages", "delayed", "parked")
        rows = [(typename, *(str(counts[c]) for c in columns)) for typename, counts in by_type.items()]
        self._table("per function type", ("function type", "addresses with state", "state values", "messages",
                                          "delayed messages", "parked"), rows, empty="no function has state or messages")

    def ids(self, typename: str, ids: list[str]) -> None:
        self._table(f"ids of {typename} with state", ("id",), [(id,) for id in ids], empty=f"no more ids of {typename} have state")

    def hint(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(text, style="dim"))

    def warning(self, text: str) -> None:
        if self.terminal:
            from rich.text import Text

            self.console.print(Text(text, style="yellow"))
        else:
            print(f"warning: {text}", file=sys.stderr)
