"""With --admin-token, nothing of the console or of the routes its pages call answers without the token;
given to the browser as the Basic password (a header, never a cookie or URL), every page works."""

from __future__ import annotations

import pytest

from e2e.processes import Runtime, request

from .harness import SKIP_WITHOUT_PLAYWRIGHT, App, Page, application, basic, shop_traffic

playwright = pytest.importorskip("playwright.sync_api", reason=SKIP_WITHOUT_PLAYWRIGHT)
expect = playwright.expect

TOKEN = "s3cret-console"
STOCK = "com.example/stock"


def test_the_console_and_its_api_answer_only_with_the_token(browser, tmp_path):
    runtime = Runtime(application(tmp_path / "app"), tmp_path / "data", env={"OPS_FIXED": str(tmp_path / "fixed")},
                      args=("--log-level", "warning", "--admin-token", TOKEN)).start()
    try:
        app = App.of(runtime, token=TOKEN)
        shop_traffic(app)
        port = app.admin_port
        routes = [("GET", path) for path in (
            "/ui", "/ui/", "/ui/static/app.js", "/ui/static/console.css", "/ui/static/no-such-file.js", "/overview",
            "/graph", "/functions", f"/functions/{STOCK}", f"/addresses/{STOCK}", f"/state/{STOCK}/socks",
            f"/delayed/{STOCK}/socks", "/parked", "/dead-letters")]
        routes += [("POST", f"/messages/{STOCK}/socks"), ("POST", "/dead-letters/1/replay"),
                   ("PUT", f"/state/{STOCK}/socks"), ("DELETE", f"/state/{STOCK}/socks")]
        for method, path in routes:
            for headers in ({}, basic("wrong"), {"Authorization": f"Bearer {TOKEN}x"}):
                assert request(port, method, path, b"", headers).status == 401, (method, path, headers)
        assert request(port, "GET", "/ui/", b"", basic(TOKEN)).status == 200
        assert app.admin("GET", f"/state/{STOCK}/socks")[1]["state"]["stock"]["value"] == 96  # nothing changed

        # a browser without the token gets the 401 and none of the console's code
        bare = browser.new_context()
        try:
            loaded = []
            anonymous = bare.new_page()
            anonymous.on("response", lambda response: loaded.append((response.url, response.status)))
            with pytest.raises(playwright.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):  # asked, and no answer given
                anonymous.goto(app.url)
            assert loaded and anonymous.locator("nav").count() == 0
            assert all(status == 401 for url, status in loaded), loaded
        finally:
            bare.close()

        given = browser.new_context(http_credentials={"username": "operator", "password": TOKEN})
        try:
            page = Page(given, app)
            view = page.open("overview")
            expect(view.locator(".figure", has_text="Backend")).to_contain_text("embedded")
            page.open("graph")
            expect(view.locator(f'svg.graph a.node[data-id="function:{STOCK}"]')).to_be_visible()
            page.open(f"addresses?type={STOCK}&id=socks")
            expect(view.get_by_role("link", name="socks")).to_be_visible()
            view.get_by_role("button", name="Edit stock").click()
            view.get_by_label("New value of stock").fill("7")
            view.get_by_role("button", name="Save stock").click()
            expect(view.get_by_text("Saved stock.")).to_be_visible()
            assert app.admin("GET", f"/state/{STOCK}/socks")[1]["state"]["stock"]["value"] == 7
            page.open("failures")
            expect(view.get_by_role("heading", name="Dead letters")).to_be_visible()
            assert page.errors == []
            # the token went in the Authorization header, never in a URL or a cookie
            assert all(TOKEN not in url for url in page.requests)
            assert given.cookies() == []
        finally:
            given.close()
    finally:
        runtime.stop()
