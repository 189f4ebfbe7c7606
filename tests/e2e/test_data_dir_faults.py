"""`pystatefun run` with a data dir it cannot use: a short error naming the path and the fix, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.disks import tmpfs

from .conftest import EXAMPLES

MODULE = EXAMPLES / "greeter" / "module.yaml"


def run_with(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pystatefun.cli", "run", str(MODULE), "--data-dir", str(data_dir), "--admin-port", "0"],
        capture_output=True, text=True, timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # click's "Error: ..." and nothing else
    for fragment in fragments:
        assert fragment in lines[0]


def test_a_data_dir_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("")
    result = run_with(tmp_path / "file" / "data")
    assert_one_line_error(result, f"cannot create data dir {tmp_path / 'file' / 'data'}", f"{tmp_path / 'file'} is a file",
                          "give --data-dir the path of a directory")


def test_a_corrupt_database(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pystatefun.db").write_bytes(os.urandom(64 * 1024))
    result = run_with(tmp_path / "data")
    assert_one_line_error(result, f"{tmp_path / 'data' / 'pystatefun.db'} is not a pystatefun database or is damaged",
                          "restore the data dir from a backup, or move the file away")


def test_a_read_only_data_dir(tmp_path):
    with tmpfs(tmp_path / "ro", "ro", "a read-only tmpfs") as folder:
        result = run_with(folder)
    assert_one_line_error(result, f"data dir {folder} is on a read-only file system",
                          "remount it read-write, or give --data-dir a directory on a writable disk")
