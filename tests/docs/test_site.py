"""The docs site builds with `mkdocs build --strict`: a broken link, a missing anchor or a page left out of
the nav fails it."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs-material is not installed (pip install -e '.[dev]')",
)


def _build(config: pathlib.Path, site: pathlib.Path) -> subprocess.CompletedProcess[str]:
    # NO_MKDOCS_2_WARNING silences Material's end-of-life banner, which is not about these docs
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=config.parent, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_site_builds_strictly(tmp_path: pathlib.Path) -> None:
    build = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    problems = [line for line in build.stderr.splitlines() if not line.startswith("INFO")]
    assert build.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems)
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert 'id="pystatefun-run"' in cli


def test_a_link_to_a_missing_anchor_is_a_warning_that_fails_the_build(tmp_path: pathlib.Path) -> None:
    # mkdocs reports missing anchors as INFO unless told otherwise; this shows mkdocs.yml tells it
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    with (tmp_path / "docs" / "index.md").open("a", encoding="utf-8") as index:
        index.write("\nSee [a section that is not there](runtime.md#no-such-section).\n")
    build = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert build.returncode != 0
    reported = [line for line in build.stderr.splitlines() if "no-such-section" in line]
    assert reported and all(line.startswith("WARNING") for line in reported), build.stderr
