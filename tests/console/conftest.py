"""A real headless Chromium (Debian's package, driven by Playwright) for the console tests, skipped with the
reason when either is missing; .ci/run installs both."""

from __future__ import annotations

import os

import pytest

from .harness import CHROMIUM, SKIP_WITHOUT_PLAYWRIGHT


# package scope, not session: Playwright's sync API keeps an event loop running in the main thread while
# it is open, and every later test that calls asyncio.run() would fail with "cannot be called from a
# running event loop"; it is closed once the console's tests are done
@pytest.fixture(scope="package")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (the console tests drive a real browser)")
    sync_api = pytest.importorskip("playwright.sync_api", reason=SKIP_WITHOUT_PLAYWRIGHT)
    expect, sync_playwright = sync_api.expect, sync_api.sync_playwright
    # the pages answer as fast as the admin API commits; on a loaded machine that takes a while
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


# the Kafka tests' broker: the one CI started (PYSTATEFUN_KAFKA_BOOTSTRAP), else a node of the session's own
from kafka.conftest import kafka_bootstrap  # noqa: E402, F401
