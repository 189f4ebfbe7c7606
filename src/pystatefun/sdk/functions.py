"""StatefulFunctions: the registry of function types and their state declarations."""

from __future__ import annotations

import inspect
import typing

from pystatefun.sdk.address import parse_typename
from pystatefun.sdk.errors import UnknownFunctionError
from pystatefun.sdk.storage import StorageFactory
from pystatefun.sdk.value_spec import ValueSpec

F = typing.TypeVar("F", bound=typing.Callable[..., typing.Any])


class StatefulFunction:
    """A registered function: its code, its state declarations, and whether it is a coroutine."""

    __slots__ = ("typename", "fun", "storage_spec", "is_async")

    def __init__(self, typename: str, fun: typing.Callable[..., typing.Any], specs: typing.Sequence[ValueSpec]):
        self.typename = typename
        self.fun = fun
        self.storage_spec = StorageFactory(typename, specs)
        self.is_async = _is_coroutine_function(fun)

    @property
    def specs(self) -> tuple[ValueSpec, ...]:
        return self.storage_spec.specs


class StatefulFunctions:
    """The function types an application serves, by typename."""

    __slots__ = ("_functions",)

    def __init__(self) -> None:
        self._functions: dict[str, StatefulFunction] = {}

    def register(
        self,
        typename: str,
        fun: typing.Callable[..., typing.Any],
        specs: typing.Sequence[ValueSpec] | None = None,
    ) -> None:
        """Registers ``fun(context, message)`` (sync or async) as the function type ``typename``.

        Registering a typename again replaces the earlier function.
        """
        if fun is None:
            raise ValueError("function instance must be provided")
        if not typename:
            raise ValueError("function typename must be provided")
        parse_typename(typename)  # 'namespace/name', or a ValueError that says so
        if not callable(fun):
            raise TypeError(f"the function registered as {typename!r} is not callable: {fun!r}")
        _check_signature(typename, fun)
        if specs is not None and not isinstance(specs, (list, tuple)):
            raise TypeError(f"specs of function {typename!r} must be a list of ValueSpec, got {specs!r}")
        self._functions[typename] = StatefulFunction(typename, fun, specs or ())

    def bind(self, typename: str, specs: typing.Sequence[ValueSpec] | None = None) -> typing.Callable[[F], F]:
        """Decorator form of ``register``; returns the function unchanged.

        ::

            functions = StatefulFunctions()

            @functions.bind("com.example/greeter", specs=[ValueSpec("seen", IntType)])
            def greeter(context, message):
                ...
        """

        def wrapper(function: F) -> F:
            self.register(typename, function, specs)
            return function

        return wrapper

    def for_typename(self, typename: str) -> StatefulFunction:
        """The function registered as ``typename``; UnknownFunctionError (a KeyError) if there is none."""
        try:
            return self._functions[typename]
        except KeyError:
            raise UnknownFunctionError(typename, list(self._functions)) from None

    def typenames(self) -> list[str]:
        """The registered function typenames."""
        return list(self._functions)

    def __contains__(self, typename: object) -> bool:
        return typename in self._functions

    def __iter__(self) -> typing.Iterator[StatefulFunction]:
        return iter(self._functions.values())

    def __len__(self) -> int:
        return len(self._functions)


def _is_coroutine_function(fun: typing.Callable[..., typing.Any]) -> bool:
    if inspect.iscoroutinefunction(fun):
        return True
    call = getattr(fun, "__call__", None)  # an object whose __call__ is async
    return call is not None and inspect.iscoroutinefunction(call)


def _check_signature(typename: str, fun: typing.Callable[..., typing.Any]) -> None:
    try:
        signature = inspect.signature(fun)
    except (TypeError, ValueError):
        return  # builtins without a signature: nothing to check
    try:
        signature.bind(object(), object())
    except TypeError:
        name = getattr(fun, "__name__", type(fun).__name__)
        raise ValueError(
            f"The registered function {typename} does not expect a context and a message but rather "
            f"{name}{signature}. A function must take exactly two positional parameters: change it to "
            f"`def {name}(context, message)` (or `async def`)."
        ) from None
