"""Small English helpers for messages users read: "1 message" and "an io.statefun.types/int"."""

from __future__ import annotations


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 message``, ``2 messages`` (``nouns``: an irregular plural, e.g. ``addresses``)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def article(word: str) -> str:
    """``a`` or ``an`` before ``word``, by its first letter (good enough for type names and identifiers)."""
    return "an" if word[:1].lower() in "aeiou" else "a"
