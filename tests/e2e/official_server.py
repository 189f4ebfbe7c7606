"""Serves a function module with the OFFICIAL StateFun Python SDK (run with its virtualenv's python).

The module is pystatefun example code; `pystatefun` is aliased to the official `statefun` package, so
the very same source runs on the official SDK: ``official_server.py FOLDER MODULE:OBJECT PORT``.
"""

import importlib
import sys

import statefun
from aiohttp import web

folder, reference, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.modules["pystatefun"] = statefun
sys.path.insert(0, folder)
module_name, attribute = reference.split(":")
functions = getattr(importlib.import_module(module_name), attribute)
handler = statefun.RequestReplyHandler(functions)


async def handle(request: web.Request) -> web.Response:
    reply = await handler.handle_async(await request.read())
    return web.Response(body=reply, content_type="application/octet-stream")


app = web.Application()
app.router.add_post("/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=port, print=None)
