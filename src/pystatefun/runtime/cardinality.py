"""How many function types get a name of their own where the runtime counts per type (the metrics'
``function_type`` label, the function graph's nodes): a namespace binding (``com.example/*``) takes any
type name, so counts kept per name would grow without bound; the types after the first ones share one."""

from __future__ import annotations

MAX_FUNCTION_TYPE_LABELS = 200
OTHER = "other"  # never a function type's name (those have a '/')


class FunctionTypeLabels:
    """The name each function type is counted under: its own for the first ``cap`` types seen (kept for
    good, so a series never changes its name), ``other`` for any type after them."""

    def __init__(self, cap: int = MAX_FUNCTION_TYPE_LABELS):
        if cap < 1:
            raise ValueError(f"the function type label cap must be at least 1, got {cap}")
        self.cap = cap
        self._named: set[str] = set()

    def __call__(self, function_type: str) -> str:
        if function_type in self._named:
            return function_type
        if len(self._named) < self.cap:
            self._named.add(function_type)
            return function_type
        return OTHER
