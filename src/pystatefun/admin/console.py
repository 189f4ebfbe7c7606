"""The web console (``/ui``): static files shipped in the wheel (admin/console_files/), written for this
project, with no build step. The pages call the admin API's own routes from the browser, under the same
bind address, origin checks and token (admin/api.py), so the console can do nothing the API cannot.
docs/console.md describes its pages."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

CONSOLE_ROOT = "/ui"
FILES = Path(__file__).parent / "console_files"
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# the files the pages load, fixed when the API starts: a request names one of them or gets 404, so no path
# of the request ever reaches the file system
STATIC = {path.name: path for path in FILES.iterdir() if path.suffix in CONTENT_TYPES}
HEADERS = {
    # no-cache: a console opened after an upgrade must not run the old pages against the new API (the
    # browser still revalidates with If-Modified-Since, so an unchanged file costs a 304)
    "Cache-Control": "no-cache",
    # nothing but this origin's own files and API: no inline script, no other site, and no page of another
    # site may frame the console (the token's Basic prompt must not be clickjacked)
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def _file(path: Path) -> web.FileResponse:
    return web.FileResponse(path, headers={**HEADERS, "Content-Type": f"{CONTENT_TYPES[path.suffix]}; charset=utf-8"})


async def _index(request: web.Request) -> web.StreamResponse:
    return _file(FILES / "index.html")


async def _static(request: web.Request) -> web.StreamResponse:
    path = STATIC.get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound(text=f"the console has no file {request.match_info['name']!r}")
    return _file(path)


async def _to_index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(CONSOLE_ROOT + "/")


def add_routes(app: web.Application) -> None:
    """``/ui`` (to ``/ui/``), ``/ui/`` (the page) and ``/ui/static/NAME`` (its scripts and styles)."""
    app.router.add_get(CONSOLE_ROOT, _to_index)
    app.router.add_get(CONSOLE_ROOT + "/", _index)
    app.router.add_get(CONSOLE_ROOT + "/static/{name}", _static)
