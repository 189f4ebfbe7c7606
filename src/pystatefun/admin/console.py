"""The web console (``/ui``): static files shipped in the wheel (admin/console_files/), written for this
project, with no build step. The pages call the admin API's own routes from the browser, under the same
bind address, origin checks and token (admin/api.py), so the console can do nothing the API cannot."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

CONSOLE_ROOT = "/ui"
FILES = Path(__file__).parent / "console_files"


async def _index(request: web.Request) -> web.StreamResponse:
    # no-cache: a console opened after an upgrade must not run the old pages against the new API
    return web.FileResponse(FILES / "index.html", headers={"Cache-Control": "no-cache"})


async def _to_index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(CONSOLE_ROOT + "/")


def add_routes(app: web.Application) -> None:
    """``/ui`` (to ``/ui/``), ``/ui/`` (the page) and ``/ui/static/...`` (its scripts and styles)."""
    app.router.add_get(CONSOLE_ROOT, _to_index)
    app.router.add_get(CONSOLE_ROOT + "/", _index)
    app.router.add_static(CONSOLE_ROOT + "/static", FILES, follow_symlinks=False, append_version=False)
