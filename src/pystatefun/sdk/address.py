"""Addresses and typenames: how functions, types, ingresses and egresses are named."""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(repr=True, eq=True, order=False, frozen=True, slots=True)
class SdkAddress:
    """The address of a function instance: its function type (``namespace/name``) and its id."""

    namespace: str
    name: str
    id: str
    typename: str


@functools.lru_cache(maxsize=4096)
def parse_typename(typename: str) -> tuple[str, str]:
    """Splits ``namespace/name`` at the last ``/``, as every StateFun SDK does.

    Cached: the same few target typenames are parsed for every message a function sends.
    """
    if typename is None:
        raise ValueError("a typename must be provided, in the form 'namespace/name'")
    if not isinstance(typename, str):
        raise TypeError(f"a typename must be a str of the form 'namespace/name', got {typename!r}")
    idx = typename.rfind("/")
    if idx < 0:
        raise ValueError(
            f"invalid typename {typename!r}: it must have the form 'namespace/name', "
            "for example 'com.example/greeter'"
        )
    namespace, name = typename[:idx], typename[idx + 1 :]
    if not namespace:
        raise ValueError(f"invalid typename {typename!r}: the namespace before the last '/' is empty")
    if not name:
        raise ValueError(f"invalid typename {typename!r}: the name after the last '/' is empty")
    return namespace, name


def address_of(typename: str, id: str) -> SdkAddress:
    """Builds the address of instance ``id`` of function type ``typename``."""
    namespace, name = parse_typename(typename)
    return SdkAddress(namespace=namespace, name=name, id=id, typename=typename)
