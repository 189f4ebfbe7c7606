"""An HttpServer (io/http_server.py) in a process of its own, for the adversarial tests to attack while
they read its memory from /proc: ``python http_target.py PORT OPTIONS_JSON``.

Its handler is shaped like the playground ingress's: it holds the request (body included) for
``?sleep=SECONDS`` and answers 202 with ``?answer=BYTES`` bytes. OPTIONS_JSON holds HttpServer's keyword
arguments, plus ``max_body_bytes`` and ``body_budget`` (bytes, for a BodyBudget of the process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from pystatefun.event_loop import run_event_loop, stop_signal
from pystatefun.io.http_server import BodyBudget, HttpServer, Request, Response


async def handle(request: Request) -> Response:
    await asyncio.sleep(float(request.query.get("sleep", "0")))
    return Response(202, b"a" * int(request.query.get("answer", "9")), {"X-Body-Bytes": str(len(request.body))})


async def main(port: int, options: dict) -> None:
    max_body_bytes = options.pop("max_body_bytes", 32 * 1024 * 1024)
    if "body_budget" in options:
        options["body_budget"] = BodyBudget(options["body_budget"])
    server = HttpServer(handle, max_body_bytes, name="adversarial target", **options)
    await server.start("127.0.0.1", port)
    stop = stop_signal()
    try:
        await stop.wait()
    finally:
        await server.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_event_loop(main(int(sys.argv[1]), json.loads(sys.argv[2])))
