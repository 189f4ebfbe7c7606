"""Importing user objects named ``package.module:attribute`` (the CLI and module.yaml use this form)."""

from __future__ import annotations

import importlib
import sys
import typing
from pathlib import Path


def load_object(reference: str, search_path: str | Path | None = None) -> typing.Any:
    """Imports ``package.module:attribute`` (the attribute may be dotted), with ``search_path`` first on
    ``sys.path``. Errors say which part could not be found."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{reference!r} must have the form 'package.module:attribute', e.g. 'app:functions'")
    if search_path is not None and str(search_path) not in sys.path:
        sys.path.insert(0, str(search_path))
    try:
        obj: typing.Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            where = f" (searched {search_path} and sys.path)" if search_path else ""
            raise ValueError(f"cannot import module {module_name!r}{where}: {e}") from e
        # the module was found, and what it imports was not
        raise ValueError(f"cannot import module {module_name!r}: it imports {e.name!r}, which is not installed "
                         f"here (install it into this Python environment, or fix the import)") from e
    except SyntaxError as e:  # the file and line say everything a traceback would
        raise ValueError(f"cannot import module {module_name!r}: {e.msg} ({e.filename}, line {e.lineno})") from e
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return obj
