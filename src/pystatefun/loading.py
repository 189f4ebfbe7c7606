"""Importing user objects named ``package.module:attribute`` (the CLI and module.yaml use this form).

Whatever goes wrong is one ValueError naming the module, where it was named (a module.yaml), the
exception and the file and line it came from; the CLI prints it as one line. The full traceback is
logged at DEBUG (``--log-level debug``): one line is what a user reads, the traceback is for digging.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
import typing
from pathlib import Path

log = logging.getLogger("pystatefun.loading")


def load_object(reference: str, search_path: str | Path | None = None, source: str | None = None) -> typing.Any:
    """Imports ``package.module:attribute`` (the attribute may be dotted), with ``search_path`` first on
    ``sys.path``; ``source`` is where the reference was written (a module.yaml), named in errors.
    Errors say which part could not be found, or what the module raised and where."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{reference!r} must have the form 'package.module:attribute', e.g. 'app:functions'")
    if search_path is not None and str(search_path) not in sys.path:
        sys.path.insert(0, str(search_path))
    what = f"module {module_name!r}" + (f" (from {source})" if source else "")
    try:
        obj: typing.Any = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            where = f" (searched {search_path} and sys.path)" if search_path else ""
            raise ValueError(f"cannot import {what}{where}: {e}") from e
        # the module was found, and what it imports was not
        raise ValueError(f"cannot import {what}: it imports {e.name!r}, which is not installed "
                         f"here (install it into this Python environment, or fix the import)") from e
    except SyntaxError as e:  # the file and line say everything a traceback would
        raise ValueError(f"cannot import {what}: {e.msg} ({e.filename}, line {e.lineno})") from e
    except (Exception, SystemExit) as e:  # anything the module's code raises (sys.exit too); not Ctrl-C
        log.debug("the import of %s raised", module_name, exc_info=e)
        raise ValueError(f"cannot import {what}: {type(e).__name__}: {e}{_origin(e, search_path)}") from e
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return obj


def _origin(error: BaseException, search_path: str | Path | None) -> str:
    """`` (file, line N)`` of the line that raised: the innermost frame in the user's folder, else the
    innermost outside the import machinery (a library the module called)."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<")]
    if not frames:
        return ""
    folder = Path(search_path).resolve() if search_path is not None else None
    mine = [f for f in frames if folder is not None and Path(f.filename).resolve().is_relative_to(folder)]
    frame = (mine or frames)[-1]
    return f" ({frame.filename}, line {frame.lineno})"
