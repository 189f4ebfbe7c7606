"""The official StateFun Python SDK (apache-flink-statefun from PyPI) in a virtualenv of its own: it
pins protobuf < 4, so it cannot share ours. Made by scripts/official-sdk-venv on first use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_SCRIPT = REPO / "scripts" / "official-sdk-venv"
OFFICIAL_VERSION = "3.3.0"


def official_python() -> str:
    """The python of the official SDK's virtualenv, made on first use; pytest.fail if impossible."""
    try:
        done = subprocess.run(
            [str(VENV_SCRIPT)], cwd=str(REPO), capture_output=True, text=True, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"could not run {VENV_SCRIPT} to make the official SDK's virtualenv: {e}", pytrace=False)
    python = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not python or not os.path.exists(python):
        pytest.fail(
            f"{VENV_SCRIPT} failed (exit code {done.returncode}), so the official StateFun SDK "
            f"(apache-flink-statefun=={OFFICIAL_VERSION}) is not available and the differential tests can "
            f"not run. Its output:\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    return python
