"""The web console in a real headless Chromium against the shopping-cart example (with apps/ops.py beside
it) run by `pystatefun run`: every page loads without console errors, and each repair done in the page
takes effect, checked through the admin API and the egress, not through the page."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from e2e.processes import Runtime

from .harness import App, Page, application, shop_traffic, wait_until


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console")
    fixed = folder / "fixed"
    runtime = Runtime(application(folder / "app"), folder / "data", env={"OPS_FIXED": str(fixed)}).start()
    try:
        app = App(runtime)
        app.fixed = fixed
        shop_traffic(app)
        yield app
    finally:
        runtime.stop()


@pytest.fixture
def page(context, app):
    page = Page(context, app)
    yield page
    assert page.errors == []


def test_every_page_loads_without_console_errors(page):
    view = page.open("overview")
    expect(view.get_by_text("Updated")).to_be_visible()
    expect(view.locator(".figure", has_text="Backend")).to_contain_text("embedded")
    page.screenshot("overview")
    view = page.open("graph")
    expect(view.locator("svg.graph .node").first).to_be_visible()
    page.open("addresses?type=com.example/user-shopping-cart")
    expect(view.get_by_role("link", name="alice")).to_be_visible()
    page.open("failures")
    expect(view.get_by_role("heading", name="Dead letters")).to_be_visible()
