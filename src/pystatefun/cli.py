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


if __name__ == "__main__":
    sys.exit(main())
