"""Helpers: write a module file into tmp_path, load it, or load it expecting problems."""

from __future__ import annotations

import textwrap
import typing
from pathlib import Path

import pytest

from pystatefun.config import Module, ModuleConfigError, load_module


class ModuleFiles:
    def __init__(self, folder: Path):
        self.folder = folder

    def write(self, text: str, name: str = "module.yaml") -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def load(self, text: str, env: typing.Mapping[str, str] | None = None, name: str = "module.yaml") -> Module:
        return load_module(self.write(text, name), env=env if env is not None else {})

    def error(self, text: str, env: typing.Mapping[str, str] | None = None, name: str = "module.yaml") -> ModuleConfigError:
        with pytest.raises(ModuleConfigError) as caught:
            self.load(text, env, name)
        return caught.value

    def problem(self, text: str, env: typing.Mapping[str, str] | None = None) -> str:
        """The single problem of ``text``, as its message line."""
        error = self.error(text, env)
        assert len(error.problems) == 1, str(error)
        return str(error.problems[0])


@pytest.fixture
def files(tmp_path: Path) -> ModuleFiles:
    return ModuleFiles(tmp_path)
