"""Importing the user's objects (``module: package.module:attribute``, ``pystatefun serve``): what goes
wrong is one ValueError naming the module and the cause, which the CLI prints as one line."""

from __future__ import annotations

import sys

import pytest

from pystatefun.loading import load_object


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_object puts the folder first; undone after
    return tmp_path


def test_an_object_is_found_by_module_and_dotted_attribute(folder):
    (folder / "loading_ok_mod.py").write_text("class A:\n    value = 42\n")
    assert load_object("loading_ok_mod:A.value", search_path=folder) == 42


def test_a_syntax_error_names_the_file_and_line(folder):
    (folder / "loading_syntax_mod.py").write_text("x = 1\ndef f(:\n")
    with pytest.raises(ValueError) as refused:
        load_object("loading_syntax_mod:functions", search_path=folder)
    assert str(refused.value) == (f"cannot import module 'loading_syntax_mod': invalid syntax "
                                  f"({folder / 'loading_syntax_mod.py'}, line 2)")


def test_a_missing_dependency_of_the_module_is_named(folder):
    (folder / "loading_dependency_mod.py").write_text("import loading_not_installed_anywhere\n")
    with pytest.raises(ValueError) as refused:
        load_object("loading_dependency_mod:functions", search_path=folder)
    assert str(refused.value) == ("cannot import module 'loading_dependency_mod': it imports 'loading_not_installed_anywhere', "
                                  "which is not installed here (install it into this Python environment, or fix the import)")


def test_a_missing_module_or_attribute_and_a_bad_reference(folder):
    with pytest.raises(ValueError, match=f"cannot import module 'loading_absent_mod' \\(searched {folder} and sys.path\\)"):
        load_object("loading_absent_mod:functions", search_path=folder)
    (folder / "loading_attr_mod.py").write_text("")
    with pytest.raises(ValueError, match="module 'loading_attr_mod' has no attribute 'functions'"):
        load_object("loading_attr_mod:functions", search_path=folder)
    with pytest.raises(ValueError, match="must have the form 'package.module:attribute'"):
        load_object("no_colon_here")
