"""Disks that fail on purpose, for the data-dir and disk-full tests: a tmpfs (small, or read-only) or a
read-only bind mount, mounted for the test and unmounted after. Mounting needs root with CAP_SYS_ADMIN
(CI has both); elsewhere the test is skipped with the reason."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import typing
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted(target: Path, *mount_args: str, why: str) -> typing.Iterator[Path]:
    """``mount *mount_args target`` for the block (``why``: what the test needs it for, for the skip)."""
    if os.geteuid() != 0:
        pytest.skip(f"{why} needs root (and chmod does not stop root)")
    result = subprocess.run(["mount", *mount_args, str(target)], capture_output=True, text=True)
    if result.returncode != 0:  # root without CAP_SYS_ADMIN, e.g. an unprivileged container
        pytest.skip(f"cannot mount here ({why}): {result.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def tmpfs(folder: Path, options: str, why: str) -> typing.ContextManager[Path]:
    """A tmpfs with mount ``options`` (``size=2m``, ``ro``) on ``folder``, which is made here."""
    folder.mkdir(parents=True, exist_ok=True)
    return mounted(folder, "-t", "tmpfs", "-o", options, "tmpfs", why=why)


def fill(disk: Path) -> Path:
    """Writes a file until ``disk`` has no byte left; returns it (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        size = 1024 * 1024
        while size:  # smaller and smaller writes, down to one byte
            try:
                os.write(fd, b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                size //= 2
    finally:
        os.close(fd)
    return filler
