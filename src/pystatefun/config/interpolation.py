"""``${VAR}`` and ``${VAR:-default}`` in module files (a pystatefun extension; StateFun has none).

The same module.yaml then serves a laptop and a cluster: ``urlPathTemplate: http://${FN_HOST:-localhost}:8000/``.
Substitution applies to string values only (never to keys), before validation, so a substituted
``port: ${PORT}`` is checked like a literal one. ``$${`` writes a literal ``${``.
"""

from __future__ import annotations

import re
import typing

from pystatefun.config.source import KeyPath

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    """A reference that cannot be substituted; ``path`` is where in the document it is."""

    def __init__(self, path: KeyPath, message: str):
        super().__init__(message)
        self.path = path


def interpolate(value: typing.Any, env: typing.Mapping[str, str], path: KeyPath = ()) -> tuple[typing.Any, list[InterpolationError]]:
    """Returns ``value`` with every reference in its strings substituted, and the references that failed."""
    errors: list[InterpolationError] = []
    return _walk(value, env, path, errors), errors


def _walk(value: typing.Any, env: typing.Mapping[str, str], path: KeyPath, errors: list[InterpolationError]) -> typing.Any:
    if isinstance(value, str):
        return _substitute(value, env, path, errors)
    if isinstance(value, dict):
        return {key: _walk(item, env, (*path, key), errors) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, env, (*path, index), errors) for index, item in enumerate(value)]
    return value


def _substitute(text: str, env: typing.Mapping[str, str], path: KeyPath, errors: list[InterpolationError]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        if not match.group(0).endswith("}"):
            errors.append(InterpolationError(path, f"unterminated '${{' in {text!r}: write ${{NAME}} or ${{NAME:-default}}, or $${{ for a literal '${{'"))
            return match.group(0)
        name, has_default, default = match.group(1).partition(":-")
        if not _NAME.fullmatch(name):
            errors.append(InterpolationError(path, f"invalid variable reference '${{{match.group(1)}}}' in {text!r}: write ${{NAME}} or ${{NAME:-default}}, NAME made of letters, digits and '_'"))
            return match.group(0)
        found = env.get(name)
        if found:  # like the shell's ${VAR:-default}: an empty variable takes the default too
            return found
        if has_default:
            return default
        if found is not None:
            return found
        errors.append(InterpolationError(path, f"environment variable {name} is not set (referenced in {text!r}): set it, or give a default with ${{{name}:-default}}"))
        return match.group(0)

    return _REFERENCE.sub(replace, text)
