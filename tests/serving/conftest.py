"""Real HTTP servers for the serving tests: uvicorn with the ASGI app, aiohttp, and `pystatefun serve`."""

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import http.client
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from aiohttp import web

from e2e.processes import free_port
from pystatefun.serving import AsgiApp, aiohttp_app

from .app import functions

APP_DIR = Path(__file__).parent


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: dict


def post(url: str, body: bytes, content_type: str | None = "application/octet-stream", method: str = "POST") -> Reply:
    """One request; no Content-Type header at all when content_type is None (urllib would add one)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        connection.request(method, parts.path or "/", body=body if method != "GET" else None, headers=headers)
        response = connection.getresponse()
        return Reply(response.status, response.headers.get("Content-Type"), response.read(), response.headers)
    finally:
        connection.close()


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture(scope="module")
def uvicorn_url():
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(AsgiApp(functions, max_request_bytes=4096), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def aiohttp_url():
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(aiohttp_app(functions, max_request_bytes=4096))

    async def start():
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


@pytest.fixture(scope="module")
def cli_log(tmp_path_factory) -> Path:
    """The output (the log) of the `pystatefun serve` process of cli_url."""
    return tmp_path_factory.mktemp("serve") / "serve.log"


@pytest.fixture(scope="module")
def cli_url(cli_log):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(APP_DIR)}
    with open(cli_log, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pystatefun.cli", "serve", "app:functions", "--port", str(port), "--log-level", "warning"],
            cwd=APP_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
