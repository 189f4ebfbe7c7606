"""The admin API against a web page and an unlucky operator, and cardinality against made-up names
(issue 19, items 4 and 5, and the ingress's refusal while the runtime cannot store, item 6).

Each test runs an Application (what ``pystatefun run`` runs) in this process on 127.0.0.1, with a real
function server (our SDK's aiohttp app, which answers 404 for a function type it does not have) behind
an endpoint bound to a whole namespace (``t/*``), and talks to it over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import typing
from datetime import timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from e2e.processes import free_port
from pystatefun import IntType, StatefulFunctions, ValueSpec, message_builder
from pystatefun.admin.server import MAX_CONNECTIONS
from pystatefun.app import Application
from pystatefun.config import load_module
from pystatefun.serving.aiohttp_server import aiohttp_app

INT = "application/vnd.io.statefun.types/int"
ONE = IntType.serializer().serialize(1)


def functions() -> StatefulFunctions:
    functions = StatefulFunctions()

    @functions.bind("t/known", specs=[ValueSpec("count", IntType)])
    def known(context, message):
        context.storage.count = (context.storage.count or 0) + message.as_int()

    @functions.bind("t/stuck")
    def stuck(context, message):
        # two pending delayed messages with one token: the runtime cannot apply that and parks the address
        for _ in range(2):
            context.send_after(timedelta(hours=1), message_builder("t/known", "k", int_value=1), "same-token")

    return functions


class Running(typing.NamedTuple):
    app: Application
    http: aiohttp.ClientSession
    ingress: str  # base URLs
    egress: str
    admin: str
    admin_port: int


@contextlib.asynccontextmanager
async def running(tmp_path: Path, token: str | None = None) -> typing.AsyncIterator[Running]:
    runner = web.AppRunner(aiohttp_app(functions()), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    ingress, egress, admin = free_port(), free_port(), free_port()
    module = tmp_path / "module.yaml"
    module.write_text(
        "kind: io.statefun.endpoints.v2/http\nspec:\n  functions: t/*\n"
        f"  urlPathTemplate: http://127.0.0.1:{sock.getsockname()[1]}/{{function.name}}\n---\n"
        f"kind: io.statefun.playground.v1/ingress\nspec:\n  port: {ingress}\n---\n"
        f"kind: io.statefun.playground.v1/egress\nspec:\n  port: {egress}\n  topics: [out]\n"
    )
    app = Application(load_module(module), tmp_path / "data", admin_port=admin, admin_token=token)
    try:
        await app.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            yield Running(app, http, f"http://127.0.0.1:{ingress}", f"http://127.0.0.1:{egress}",
                          f"http://127.0.0.1:{admin}", admin)
    finally:
        await app.stop()
        await runner.cleanup()


async def put(r: Running, path: str) -> tuple[int, str]:
    async with r.http.put(r.ingress + path, data=ONE, headers={"Content-Type": INT}) as response:
        return response.status, await response.text()


async def parked(r: Running, count: int) -> list[dict]:
    """The parked addresses once there are ``count`` of them (bounded wait)."""
    for _ in range(500):
        if len(r.app.runtime.parked()) >= count:
            break
        await asyncio.sleep(0.02)
    async with r.http.get(f"{r.admin}/parked?limit=1000") as response:
        assert response.status == 200
        return await response.json()


def test_a_cross_origin_post_cannot_skip_a_parked_address(tmp_path):
    async def scenario():
        async with running(tmp_path) as r:
            assert (await put(r, "/t/stuck/x"))[0] == 202
            assert [p["address"] for p in await parked(r, 1)] == ["t/stuck/x"]
            skip = f"{r.admin}/parked/t/stuck/x/skip"
            for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                            {"Origin": f"http://127.0.0.1:{r.admin_port + 1}"},  # another port is another origin
                            {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
                async with r.http.post(skip, headers=headers) as response:
                    assert response.status == 403, headers
                    assert "cross-origin requests are refused" in (await response.json())["error"]
            assert len(r.app.runtime.parked()) == 1  # nothing was skipped
            # the admin API's own origin (its console, or a user typing the URL) is served
            async with r.http.post(skip, headers={"Origin": r.admin, "Sec-Fetch-Site": "same-origin"}) as response:
                assert response.status == 200 and (await response.json())["skipped"] is True
            assert r.app.runtime.parked() == []

    asyncio.run(scenario())


def test_a_foreign_host_can_neither_read_nor_write_state(tmp_path):
    """DNS rebinding: a page's own name resolved to 127.0.0.1 reaches the port, but not the API."""
    async def scenario():
        async with running(tmp_path) as r:
            assert (await put(r, "/t/known/a"))[0] == 202
            state = f"{r.admin}/state/t/known/a"
            for host in ("evil.example", f"evil.example:{r.admin_port}", f"127.0.0.1:{r.admin_port + 1}"):
                async with r.http.get(state, headers={"Host": host}) as response:
                    assert response.status == 421, host
                    error = (await response.json())["error"]
                    assert f"127.0.0.1:{r.admin_port}" in error and "--admin-token" in error
                async with r.http.put(state, json={"count": {"value": 99}}, headers={"Host": host}) as response:
                    assert response.status == 421
            for host in (f"localhost:{r.admin_port}", f"127.0.0.1:{r.admin_port}", f"[::1]:{r.admin_port}"):
                async with r.http.get(state, headers={"Host": host}) as response:
                    assert response.status == 200, host
                    assert (await response.json())["state"]["count"]["value"] == 1  # the PUTs changed nothing

    asyncio.run(scenario())


def test_an_admin_api_beyond_loopback_without_a_token_is_refused_at_start(tmp_path):
    module = tmp_path / "module.yaml"
    module.write_text("kind: io.statefun.playground.v1/ingress\nspec:\n  port: 1\n")
    environment = {k: v for k, v in os.environ.items() if k != "PYSTATEFUN_ADMIN_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "pystatefun.cli", "run", str(module), "--data-dir", str(tmp_path / "data"),
         "--admin-host", "0.0.0.0", "--admin-port", str(free_port())],
        capture_output=True, text=True, timeout=60, env=environment)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "--admin-token" in line and "PYSTATEFUN_ADMIN_TOKEN" in line and "0.0.0.0" in line


def test_prometheus_scrapes_without_the_write_token(tmp_path):
    async def scenario():
        async with running(tmp_path, token="s3cret") as r:
            async with r.http.get(f"{r.admin}/metrics") as response:
                assert response.status == 200 and "pystatefun_epochs_committed" in await response.text()
            async with r.http.get(f"{r.admin}/health") as response:
                assert response.status == 200
            for route in ("/parked", "/functions", "/state/t/known/a", "/dead-letters"):
                async with r.http.get(r.admin + route) as response:
                    assert response.status == 401, route
            async with r.http.get(f"{r.admin}/parked", headers={"Authorization": "Bearer s3cret"}) as response:
                assert response.status == 200

    asyncio.run(scenario())


def series(metrics: str, family: str) -> list[str]:
    return re.findall(rf'^{family}\{{function_type="([^"]*)"\}}', metrics, re.MULTILINE)


def test_made_up_function_types_are_refused_and_their_metric_series_capped(tmp_path):
    types, cap = 300, 50

    async def scenario():
        async with running(tmp_path) as r:
            r.app.metrics.label_of.cap = cap
            for i in range(types):
                assert (await put(r, f"/t/made-up-{i}/first"))[0] == 202
            # the message that found out is kept as a dead letter; no address is parked for a made-up name
            for _ in range(500):
                if len(r.app.store.dead_letters(limit=1000)) == types:
                    break
                await asyncio.sleep(0.02)
            letters = r.app.store.dead_letters(limit=1000)
            assert sorted(letter["target"] for letter in letters) == sorted(f"t/made-up-{i}/first" for i in range(types))
            assert "answered 404" in letters[0]["reason"]

            # the endpoint said 404 for each: new messages to those types are refused at the ingress
            for i in range(types):
                status, reason = await put(r, f"/t/made-up-{i}/second")
                assert status == 404 and f"'t/made-up-{i}' is not registered at its endpoint" in reason
            assert r.app.runtime.parked() == [] and len(r.app.store.dead_letters(limit=1000)) == types
            assert (await put(r, "/t/known/k"))[0] == 202  # a real type is not affected
            async with r.http.get(f"{r.admin}/functions") as response:
                (binding,) = await response.json()
            assert len(binding["unregistered"]) == types and 0 < binding["unregistered"]["t/made-up-0"] <= 60
            assert "t/made-up-0" not in binding["function_types"]

            async with r.http.get(f"{r.admin}/metrics") as response:
                metrics = await response.text()
            for family in ("pystatefun_function_in_total", "pystatefun_function_remote_invocation_failures_total"):
                labels = series(metrics, family)
                assert len(labels) == len(set(labels)) <= cap + 1, family
                assert "other" in labels, family
            failures_by_label = {label: float(value) for label, value in re.findall(
                r'^pystatefun_function_remote_invocation_failures_total\{function_type="([^"]*)"\} (\S+)', metrics,
                re.MULTILINE)}
            assert sum(failures_by_label.values()) == types  # nothing lost in the other bucket

    asyncio.run(scenario())


def test_parked_and_dead_letters_are_paged(tmp_path):
    async def scenario():
        async with running(tmp_path) as r:
            addresses = [f"t/stuck/{i}" for i in range(7)]
            for address in addresses:
                assert (await put(r, "/" + address))[0] == 202
            assert len(await parked(r, 7)) == 7
            seen, after = [], ""
            for _ in range(10):  # pages of 3: 3, 3, 1
                async with r.http.get(f"{r.admin}/parked", params={"after": after, "limit": "3"}) as response:
                    page = await response.json()
                seen += [p["address"] for p in page]
                if len(page) < 3:
                    break
                after = page[-1]["address"]
            assert seen == sorted(addresses)
            for limit in ("0", "1001", "x"):
                async with r.http.get(f"{r.admin}/parked", params={"limit": limit}) as response:
                    assert response.status == 400 and "limit" in (await response.json())["error"]

            for address in addresses:  # each skipped message becomes a dead letter
                async with r.http.post(f"{r.admin}/parked/{address}/skip") as response:
                    assert response.status == 200
            letters, after = [], 0
            for _ in range(10):
                async with r.http.get(f"{r.admin}/dead-letters", params={"after": str(after), "limit": "3"}) as response:
                    page = await response.json()
                letters += page
                if len(page) < 3:
                    break
                after = page[-1]["seq"]
            assert sorted(letter["target"] for letter in letters) == sorted(addresses)
            assert len({letter["seq"] for letter in letters}) == 7

    asyncio.run(scenario())


def test_the_admin_api_has_its_own_connection_cap_and_outlives_a_saturated_ingress(tmp_path):
    async def scenario():
        async with running(tmp_path) as r:
            held = []
            try:
                ingress_port = int(r.ingress.rsplit(":", 1)[1])
                for _ in range(300):  # silent connections on the data plane
                    held.append(await asyncio.open_connection("127.0.0.1", ingress_port))
                async with r.http.get(f"{r.admin}/health") as response:
                    assert response.status == 200
                for _ in range(MAX_CONNECTIONS):  # the admin API's own cap, filled by silent connections
                    held.append(await asyncio.open_connection("127.0.0.1", r.admin_port))
                reader, writer = await asyncio.open_connection("127.0.0.1", r.admin_port)
                writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                refusal = await asyncio.wait_for(reader.read(), 10)  # answered and closed at once
                writer.close()
                assert refusal.startswith(b"HTTP/1.1 503 ") and b"connections open, the most it keeps" in refusal
            finally:
                for _, writer in held:
                    writer.close()
            for _ in range(100):  # the held connections are closed: the admin API answers again
                try:
                    async with r.http.get(f"{r.admin}/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the admin API did not answer once its connections were closed")

    asyncio.run(scenario())


def test_the_ingress_refuses_new_messages_while_the_runtime_cannot_store_them(tmp_path):
    async def scenario():
        async with running(tmp_path) as r:
            r.app.runtime.unavailable = "the disk holding /data is full (0 bytes free)"
            async with r.http.put(f"{r.ingress}/t/known/a", data=ONE, headers={"Content-Type": INT}) as response:
                assert response.status == 507
                assert "the disk holding /data is full" in await response.text()
                assert int(response.headers["Retry-After"]) > 0
            async with r.http.get(f"{r.egress}/out") as response:  # reads are not refused
                assert response.status == 404
            r.app.runtime.unavailable = None
            assert (await put(r, "/t/known/a"))[0] == 202

    asyncio.run(scenario())
