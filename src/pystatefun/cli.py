"""The ``pystatefun`` command line."""

from __future__ import annotations

import os
import sys

import click

from pystatefun.loading import load_object
from pystatefun.sdk.functions import StatefulFunctions


@click.group()
@click.version_option(package_name="pystatefun")
def main() -> None:
    """pystatefun: Stateful Functions for Python."""


@main.command()
@click.argument("reference", metavar="MODULE:OBJECT")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(reference: str, host: str, port: int, log_level: str) -> None:
    """Serve the StatefulFunctions MODULE:OBJECT as a remote function endpoint (StateFun HTTP protocol).

    The current directory is on the import path, so `pystatefun serve app:functions` finds ./app.py.
    Every URL path is served; the request names the function.
    """
    import uvicorn

    from pystatefun.serving.asgi import AsgiApp

    try:
        functions = load_object(reference, search_path=os.getcwd())
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if not isinstance(functions, StatefulFunctions):
        raise click.UsageError(
            f"{reference} is a {type(functions).__qualname__}, not a StatefulFunctions; point at the object "
            "your functions are bound to (functions = StatefulFunctions())"
        )
    click.echo(f"serving {', '.join(functions.typenames()) or 'no functions'} on http://{host}:{port}", err=True)
    uvicorn.run(AsgiApp(functions), host=host, port=port, log_level=log_level, access_log=False)


@main.command()
@click.argument("module_yaml", metavar="MODULE.yaml", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--data-dir",
    default="pystatefun-data",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the application's SQLite database lives; restart with the same one to continue.",
)
@click.option(
    "--partitions",
    default=8,
    show_default=True,
    type=click.IntRange(1, 4096),
    help="Partitions of a new data dir (fixed once it exists).",
)
@click.option(
    "--commit-interval",
    default="100ms",
    show_default=True,
    help="How often an epoch commits: shorter answers ingresses sooner, longer batches more work per commit.",
)
@click.option(
    "--admin-port",
    default=8081,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the admin API (GET /health) on 127.0.0.1; 0 turns it off.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def run(module_yaml: str, data_dir: str, partitions: int, commit_interval: str, admin_port: int, log_level: str) -> None:
    """Run the application of MODULE.yaml on the embedded backend: one process, durable, exactly-once."""
    import logging

    from pystatefun.app import Application, run_event_loop
    from pystatefun.backends.embedded import DataDirError
    from pystatefun.config import ModuleConfigError, load_module, parse_duration

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        interval = parse_duration(commit_interval).total_seconds()
        module = load_module(module_yaml)
        application = Application(
            module, data_dir, partitions=partitions, commit_interval=interval, admin_port=admin_port or None
        )
    except (ModuleConfigError, DataDirError, ValueError, TypeError, RuntimeError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"pystatefun running {module_yaml} with data in {data_dir}", err=True)
    try:
        run_event_loop(application.run_until_signalled())
    except OSError as e:  # a port in use, most often
        raise click.ClickException(f"cannot start: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
