"""What the console tests share: the shopping-cart example with the test functions of apps/ops.py, run by
`pystatefun run` (or as Kafka workers), and a page of a real headless Chromium that collects every console
error and uncaught exception of the pages it shows."""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
import typing
from pathlib import Path
from urllib.parse import urlsplit

from e2e.processes import Runtime, request

ROOT = Path(__file__).resolve().parents[2]
CART = ROOT / "examples" / "shopping-cart" / "shopping_cart.py"
OPS = Path(__file__).parent / "apps" / "ops.py"
# where the pages' screenshots go: the docs' own folder only when asked (a test run must not change files
# of the repository), else a folder of the temporary directory
SCREENSHOTS = Path(os.environ.get("PYSTATEFUN_SCREENSHOTS") or Path(tempfile.gettempdir()) / "pystatefun-console")
CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright's own browser builds come from a CDN this project cannot reach
SKIP_WITHOUT_PLAYWRIGHT = "the Python package playwright is not installed: pip install -e '.[dev]'"

FUNCTIONS = """\
kind: pystatefun.v1/embedded
spec:
  functions: com.example/*
  module: shopping_cart:functions
---
kind: pystatefun.v1/embedded
spec:
  functions: ops/*
  module: ops:functions
"""
INGRESS = """\
---
kind: io.statefun.playground.v1/ingress
spec:
  port: ${INGRESS_PORT}
"""
EGRESS = """\
---
kind: io.statefun.playground.v1/egress
spec:
  port: ${EGRESS_PORT}
  topics: [receipts, ops]
"""


def application(folder: Path, egress: bool = True) -> Path:
    """The shopping cart and ops/* in ``folder``, with the playground ingress and (``egress``) egress: its
    module.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(CART, folder / CART.name)
    shutil.copy(OPS, folder / OPS.name)
    module = folder / "module.yaml"
    module.write_text(FUNCTIONS + INGRESS + (EGRESS if egress else ""))
    return module


def wait_until(condition: typing.Callable[[], typing.Any], what: str, timeout: float = 60.0) -> typing.Any:
    """Waits for ``condition`` to be true and gives its value (a liveness bound for a loaded machine, not a
    timing check)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)
    return value


class App:
    """A running application, over HTTP: an ingress, the egress (embedded backend) and an admin API."""

    def __init__(self, admin_port: int, ingress_port: int, egress_port: int | None = None, token: str | None = None):
        self.admin_port, self.ingress_port, self.egress_port = admin_port, ingress_port, egress_port
        self.token = token
        self.taken: dict[str, list[dict]] = {}

    @classmethod
    def of(cls, runtime: Runtime, token: str | None = None) -> "App":
        return cls(runtime.admin_port, runtime.ingress_port, runtime.egress_port, token)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/ui/"

    def send(self, typename: str, id: str, message_type: str, body: typing.Any, wait: float | None = None):
        path = f"/{typename}/{id}" + (f"?wait={wait}" if wait is not None else "")
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        reply = request(self.ingress_port, "PUT", path, data, {"Content-Type": f"application/vnd.{message_type}"}, timeout=60)
        assert reply.status in (200, 202), reply
        return reply

    def admin(self, method: str, path: str, body: typing.Any = None) -> tuple[int, typing.Any]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        reply = request(self.admin_port, method, path, b"" if body is None else json.dumps(body).encode(), headers, timeout=60)
        try:
            return reply.status, json.loads(reply.body)
        except ValueError:
            return reply.status, reply.body.decode(errors="replace")

    def egress(self, topic: str) -> list[dict]:
        """Every record of ``topic`` taken so far (the playground egress hands each out once)."""
        taken = self.taken.setdefault(topic, [])
        while (reply := request(self.egress_port, "GET", f"/{topic}")).status == 200:
            taken.append(json.loads(reply.body))
        return taken


def shop_traffic(app: App, users: typing.Iterable[str] = ("alice", "bob")) -> None:
    """Restocks socks, fills the users' carts and checks them out: every flow of the example."""
    app.send("com.example/stock", "socks", "com.example/RestockItem", {"quantity": 100})
    for user in users:
        app.send("com.example/user-shopping-cart", user, "com.example/AddToCart", {"sku": "socks", "quantity": 2})
    for user in users:  # the stock answers the cart in a message of its own: the checkout waits for it
        wait_until(lambda: app.admin("GET", f"/state/com.example/user-shopping-cart/{user}")[1]["state"],
                   f"{user}'s cart holds the socks")
        reply = app.send("com.example/user-shopping-cart", user, "com.example/Checkout", {}, wait=30)
        assert json.loads(reply.body) == {"user": user, "items": {"socks": 2}}


class Page:
    """A browser page on the console of ``app``: ``errors`` holds every console error and uncaught
    exception its pages caused."""

    def __init__(self, context, app: App):
        self.app = app
        self.page = context.new_page()
        self.errors: list[str] = []
        self.refusals: set[tuple[int, str]] = set()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.requests: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))

    def refused(self, status: int, path: str) -> None:
        """A refusal the test asks for (``status`` from ``path``), which Chromium logs as a console error."""
        self.refusals.add((status, path))

    def _console(self, message) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        for status, path in self.refusals:
            if message.text.startswith(f"Failed to load resource: the server responded with a status of {status} ") \
                    and urlsplit(url).path == path:
                return
        self.errors.append(f"console: {message.text} ({url})")

    def open(self, route: str = "overview"):
        self.page.goto(self.app.url + f"#/{route}")
        return self.page

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"operator:{token}".encode()).decode()}
