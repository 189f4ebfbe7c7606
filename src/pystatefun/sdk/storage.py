"""Address-scoped storage: ``context.storage.<name>`` for every declared ValueSpec.

Each state is a Cell that holds the TypedValue received with the batch. A value is deserialized at most
once per batch, on first read, and serialized once, when the batch's mutations are collected. A mutable
value (a dict, a list, a model) that was read and then changed in place is detected by comparing its
serialization with the one taken when it was read, so ``context.storage.cart["socks"] += 1`` is saved
without re-assigning ``context.storage.cart``.
"""

from __future__ import annotations

import typing

from pystatefun.sdk import messages
from pystatefun.sdk.errors import StateTypeMismatchError
from pystatefun.sdk.types import TypeSerializer
from pystatefun.sdk.value_spec import ValueSpec
from pystatefun.wire.values import AnyTypedValue, PlainTypedValue

# Values of these types cannot change in place, so reading them needs no snapshot.
_IMMUTABLE = frozenset((int, float, str, bytes, bool, type(None), tuple, frozenset, complex))

# Cell states
_UNREAD, _READ, _WRITTEN, _DELETED = range(4)

_new = object.__new__


class Cell:
    """One state value of the current address during a batch. Made by ``StorageFactory.make`` only, which
    sets its slots directly (one call less per state and batch):

    * ``spec``, ``serializer`` (``spec.type.serializer()``, asked once per function) and
      ``function_typename``, for the messages of its errors;
    * ``typed_value``: the value as received (None, or has_value false: absent);
    * ``value``, and ``status``: unread, read, written or deleted;
    * ``written``: the serialized value of the last assignment;
    * ``snapshot``: the serialization of a mutable value when it was read or assigned.
    """

    __slots__ = ("spec", "serializer", "function_typename", "typed_value", "value", "status", "written", "snapshot")
    spec: ValueSpec
    serializer: TypeSerializer
    function_typename: str
    typed_value: AnyTypedValue | None
    value: typing.Any
    status: int
    written: bytes | None
    snapshot: bytes | None

    def get(self) -> typing.Any:
        if self.status != _UNREAD:
            return self.value
        self.status = _READ
        tv = self.typed_value
        if tv is None or not tv.has_value:
            return None
        spec = self.spec
        if tv.typename != spec.type.typename:
            raise StateTypeMismatchError(
                f"Type mismatch: state {spec.name!r} of function {self.function_typename!r} holds a value of "
                f"type {tv.typename!r}, yet its ValueSpec declares {spec.type.typename!r}. Declare the stored "
                "type in the ValueSpec, or delete the old value."
            )
        serializer = self.serializer
        value = serializer.deserialize(tv.value)
        if type(value) not in _IMMUTABLE:
            self.snapshot = serializer.serialize(value)
        self.value = value
        return value

    def set(self, value: typing.Any) -> None:
        spec = self.spec
        if value is None:
            raise ValueError(
                f"can not set state {spec.name!r} to None. To delete a value, use `del context.storage.{spec.name}`."
            )
        serializer = self.serializer
        try:
            data = serializer.serialize(value)
        except (TypeError, ValueError) as e:
            error = TypeError if isinstance(e, TypeError) else ValueError
            raise error(
                f"wrong value for state {spec.name!r} of function {self.function_typename!r} "
                f"(ValueSpec type {spec.type.typename!r}): {e}"
            ) from e
        # Reads after an assignment see the value as stored, exactly as in the official SDK (a float
        # rounded to 32 bits, a tuple as a list); a mutable one is then watched for in-place changes.
        if type(value) is not serializer._unchanged:
            value = serializer.deserialize(data)
        self.value = value
        self.written = data
        self.snapshot = data if type(value) not in _IMMUTABLE else None
        self.status = _WRITTEN

    def delete(self) -> None:
        self.value = None
        self.status = _DELETED

    def mutation(self) -> tuple[bool, PlainTypedValue | None]:
        """What the batch did to this state: (changed, new value or None when deleted)."""
        status = self.status
        if status == _DELETED:
            return True, None
        if status == _UNREAD:
            return False, None
        data = self.written
        if self.snapshot is not None:  # a mutable value: serialize it again to see in-place changes
            spec = self.spec
            try:
                current = self.serializer.serialize(self.value)
            except (TypeError, ValueError) as e:
                error = TypeError if isinstance(e, TypeError) else ValueError
                raise error(
                    f"state {spec.name!r} of function {self.function_typename!r} was changed in place into a "
                    f"value that can not be serialized as {spec.type.typename!r}: {e}"
                ) from e
            if current != self.snapshot:
                data = current
        if data is None:  # read, and not changed
            return False, None
        return True, messages.typed_value(self.spec.type.typename, data)


class StorageFactory:
    """Makes the storage object of one function: a class with one property per ValueSpec."""

    __slots__ = ("specs", "names", "_cls", "_set_cells", "_cells")

    def __init__(self, function_typename: str, specs: typing.Sequence[ValueSpec]):
        props: dict[str, typing.Any] = {}
        for spec in specs:
            if not isinstance(spec, ValueSpec):
                raise TypeError(
                    f"specs of function {function_typename!r} must be ValueSpec objects, got {spec!r}"
                )
            if spec.name in props:
                raise ValueError(
                    f"duplicate registered value name: {spec.name!r} is declared twice for function "
                    f"{function_typename!r}; give each ValueSpec a distinct name"
                )
            props[spec.name] = _state_property(spec.name)
        declared = ", ".join(s.name for s in specs) or "none"

        def unknown(name: str) -> AttributeError:
            return AttributeError(
                f"{name!r} is not a registered ValueSpec for the function {function_typename!r} "
                f"(declared: {declared}); add ValueSpec({name!r}, <type>) to the specs of "
                f"bind({function_typename!r}, specs=[...])"
            )

        def __getattr__(self, name: str) -> typing.Any:
            raise unknown(name)

        def __setattr__(self, name: str, value: typing.Any) -> None:
            cell = self._cells.get(name)
            if cell is None:
                raise unknown(name)
            cell.set(value)

        def __delattr__(self, name: str) -> None:
            cell = self._cells.get(name)
            if cell is None:
                raise unknown(name)
            cell.delete()

        def __repr__(self) -> str:
            return f"<storage of {function_typename}: {declared}>"

        props.update(
            __slots__=("_cells",),
            __getattr__=__getattr__,
            __setattr__=__setattr__,
            __delattr__=__delattr__,
            __repr__=__repr__,
        )
        self.specs = tuple(specs)
        self.names = frozenset(spec.name for spec in specs)
        # what each batch's cells are made of: a type's serializer is asked for once per function
        self._cells = tuple((spec.name, spec, spec.type.serializer()) for spec in self.specs)
        self._cls = type("AddressScopedStorage", (), props)
        # a storage object is made without an __init__ (its __setattr__ takes only state names): its one
        # slot is set through the slot's descriptor, in C
        self._set_cells = self._cls.__dict__["_cells"].__set__

    def missing(self, received: typing.Container[str]) -> list[ValueSpec]:
        """The declared specs (in declaration order) that the runtime did not send."""
        return [spec for spec in self.specs if spec.name not in received]

    def make(self, function_typename: str, received: typing.Mapping[str, AnyTypedValue | None]) -> tuple[typing.Any, dict[str, Cell]]:
        """A storage object over ``received`` values, and its cells (in declaration order)."""
        cells = {}
        for name, spec, serializer in self._cells:  # a loop: most functions have one or two states
            cell = cells[name] = _new(Cell)
            cell.spec, cell.serializer, cell.function_typename = spec, serializer, function_typename
            cell.typed_value, cell.status = received.get(name), _UNREAD
            cell.value = cell.written = cell.snapshot = None
        storage = _new(self._cls)
        self._set_cells(storage, cells)
        return storage, cells


def _state_property(name: str) -> property:
    def fget(self):
        return self._cells[name].get()

    return property(fget)
