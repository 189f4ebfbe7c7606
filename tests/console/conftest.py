"""A real headless Chromium (Debian's package, driven by Playwright) for the console tests, skipped with the
reason when either is missing; .ci/run installs both."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .harness import CHROMIUM


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (the console tests drive a real browser)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip("the Python package playwright is not installed: pip install -e '.[dev]'")
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
