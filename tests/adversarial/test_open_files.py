"""Descriptors must not run out before a listener's connection cap refuses anyone (issue 19): a process
started with the common soft limit of 1,024 open files raises it to its hard limit, and says so in the
log when even that is too low for its caps."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from e2e.processes import free_port, terminate, wait_for_port

HOP = Path(__file__).parent / "apps" / "hop"


def _serve_with_limits(soft: int, hard: int) -> tuple[int, str]:
    """Runs `pystatefun serve` under these open-file limits; returns its soft limit once it serves, and
    its log."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pystatefun.cli", "serve", "hop:functions", "--port", str(port)],
        cwd=HOP, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )
    try:
        wait_for_port(port, process)
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        in_force = int(line.split()[3])
    finally:
        terminate(process, 10)
    return in_force, process.stdout.read().decode(errors="replace")


def test_the_soft_limit_of_open_files_is_raised_to_the_hard_one():
    hard = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 16384)
    in_force, log = _serve_with_limits(256, hard)
    assert in_force == hard
    assert ("only" in log and "open files are allowed" in log) == (hard < 8192), log


def test_a_hard_limit_too_low_for_the_caps_is_reported():
    in_force, log = _serve_with_limits(256, 2048)
    assert in_force == 2048
    assert "only 2048 open files are allowed (ulimit -n)" in log and "allow 8192 or more" in log, log
