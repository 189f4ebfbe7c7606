"""``pystatefun init NAME``: a new project that runs and passes its own tests at once.

The files are the templates in ``template/`` with ``{{name}}`` (the project's name, also the namespace of
its function types) and ``{{version}}`` (this pystatefun, pinned in requirements.txt) filled in.
"""

from __future__ import annotations

import importlib.metadata
import json
import keyword
from importlib import resources
from pathlib import Path

# template file -> the file it becomes (the dotfiles are stored without their dot: a .gitignore here would be git's own)
FILES = {
    "functions.py.tmpl": "functions.py",
    "test_functions.py.tmpl": "test_functions.py",
    "module.yaml.tmpl": "module.yaml",
    "module-remote.yaml.tmpl": "module-remote.yaml",
    "requirements.txt.tmpl": "requirements.txt",
    "Dockerfile.tmpl": "Dockerfile",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "dockerignore.tmpl": ".dockerignore",
}


class ScaffoldError(ValueError):
    """A name or directory ``init`` cannot use; the message says what to do instead."""


def check_name(name: str) -> None:
    """Refuse a name that cannot be both a Python identifier and a function type namespace."""
    if not name.isidentifier() or not name.isascii():
        raise ScaffoldError(f"{name!r} is not a valid name: use ASCII letters, digits and underscores, not "
                            "starting with a digit (e.g. my_app); it names the project and its function types")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword: choose another name (e.g. {name}_app)")


def installed_from() -> str | None:
    """Where the pystatefun that runs was installed from, when not from a package index: a checkout, a
    wheel file or a VCS URL (PEP 610's direct_url.json); None from an index. A project's requirements.txt
    pins the version, which pip finds on an index only, so its user needs to know."""
    origin = importlib.metadata.distribution("pystatefun").read_text("direct_url.json")
    return json.loads(origin).get("url") if origin else None


def create_project(name: str, directory: Path) -> list[Path]:
    """Write the project ``name`` into ``directory`` (created if missing, refused if not empty); return
    the files written."""
    check_name(name)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ScaffoldError(f"{directory} already exists and is not an empty directory: choose a new one with "
                            "--directory DIR")
    directory.mkdir(parents=True, exist_ok=True)
    values = {"{{name}}": name, "{{version}}": importlib.metadata.version("pystatefun")}
    template = resources.files(__package__) / "template"
    written = []
    for source, target in FILES.items():
        text = (template / source).read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        path = directory / target
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
