"""The errors the SDK raises on top of the built-in ones; each message says what to change."""

from __future__ import annotations


class UnknownFunctionError(KeyError):
    """A request targets a function type that is not registered.

    A KeyError, as ``StatefulFunctions.for_typename`` raises in the official SDK.
    """

    def __init__(self, typename: str, known: list[str]):
        self.typename = typename
        registered = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"no function is registered for type {typename!r} (registered: {registered}); "
            f"register it with @functions.bind({typename!r})"
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class MalformedRequestError(ValueError):
    """The bytes given to a handler are not a valid StateFun ``ToFunction`` invocation request."""


class StateTypeMismatchError(TypeError):
    """A stored state value's typename differs from the type its ValueSpec declares."""
