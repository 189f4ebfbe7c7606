"""Upgrading state on the way: ``pystatefun savepoint transform IN OUT --with module:function``.

A transform function sees every address that has state, one at a time, and returns what its state is to
be in the new savepoint::

    from pystatefun.savepoints.transform import SavedState

    def upgrade(address, states):
        # address: an SdkAddress (.namespace, .name, .typename "namespace/name", .id)
        # states: {state name: SavedState}, the address's state values
        if address.typename == "example/counter" and "count" in states:
            # rename "count" to "total" and change its type from int to string
            states["total"] = SavedState.of(str(states.pop("count").as_int()), "io.statefun.types/string")
        return states  # None or {} drops the address's state

A :class:`SavedState` is a typename, the value's bytes and when it expires (epoch ms, or None); it reads
the value of a built-in type or a JSON type (``as_int()``, ``as_json()``, ``decode(SomeType)``) and makes
new values (``SavedState.of(value, type)``, ``SavedState.of_json(typename, value)``). A state the function
returns unchanged keeps its bytes as they were.

Everything else in the savepoint is copied as it is: messages, delayed messages, parked addresses, dead
letters, idempotency records, ingress positions and egress records; the manifest keeps the source's
application, backend, partition count, mode and time, with new counts and checksum.

**Registered state specs.** A remote function's state specs (name and type, as it registered them) are in
the savepoint too, so that a restored application does not negotiate them again. A spec whose type no
longer matches the values is dropped: when a state named N of function type T holds a value of another
type than T's spec for N says, after the transform, the spec row (T, N) is left out, and the remote
function registers N again, with its new type, on its first call. Specs of renamed or dropped states
are kept (they describe no value any more, and a function that still declares them needs them).

The source is verified (every row against its checksum) before anything is written, the addresses are
streamed (memory holds one address's state), and a function that raises stops the transform with the
address, the exception and the line it came from; nothing is written then (``storage.writing`` removes
the partial file).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import typing
from pathlib import Path

from pystatefun.savepoints import storage
from pystatefun.savepoints.format import (
    TABLES,
    SavepointError,
    SavepointReader,
    SavepointWriter,
    SpecRow,
    StateRow,
)
from pystatefun.sdk.address import SdkAddress
from pystatefun.sdk.types import BUILTIN_TYPES, Type

if typing.TYPE_CHECKING:
    from pystatefun.wire.request_reply_pb2 import TypedValue

Progress = typing.Callable[[str, int, int], None]  # (what is being done, rows or addresses done so far, of how many)
TransformFunction = typing.Callable[[SdkAddress, dict[str, "SavedState"]], "dict[str, SavedState] | None"]

_INTS = ("io.statefun.types/int", "io.statefun.types/long")
_FLOATS = ("io.statefun.types/float", "io.statefun.types/double")
_PROGRESS_EVERY = 1_000


class TransformError(SavepointError):
    """The transform function raised or returned something that is not state; nothing was written."""


@dataclasses.dataclass(frozen=True, slots=True)
class SavedState:
    """One state value in a savepoint: its ``typename`` (the value's type, e.g. ``io.statefun.types/int``
    or ``example/Cart``), its ``value`` as bytes, and ``expire_at``, when it expires (epoch ms), or None."""

    typename: str
    value: bytes
    expire_at: int | None = None

    # -- reading -------------------------------------------------------------------------------------

    def decode(self, type: Type | None = None) -> typing.Any:
        """The value: read by ``type`` (an SDK Type: ``make_json_type``, ``make_protobuf_type``, ...) when
        given, else as the admin API reads it: a built-in type's value, or JSON."""
        if type is not None:
            return type.serializer().deserialize(self.value)
        builtin = BUILTIN_TYPES.get(self.typename)
        if builtin is not None:
            return builtin.serializer().deserialize(self.value)
        try:
            return json.loads(self.value.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ValueError(f"a {self.typename} value is neither a built-in type nor JSON: read it with "
                             f"decode(its Type), or use .value (the bytes)") from None

    def as_json(self) -> typing.Any:
        """The value of a JSON type (its bytes are UTF-8 JSON), as ``json.loads`` returns it."""
        try:
            return json.loads(self.value.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError(f"a {self.typename} value is not JSON: {e}") from None

    def as_int(self) -> int:
        """The value of an ``io.statefun.types/int`` or ``/long``."""
        return self._builtin(_INTS, "an int or long")

    def as_float(self) -> float:
        """The value of an ``io.statefun.types/float`` or ``/double``."""
        return self._builtin(_FLOATS, "a float or double")

    def as_str(self) -> str:
        """The value of an ``io.statefun.types/string``."""
        return self._builtin(("io.statefun.types/string",), "a string")

    def as_bool(self) -> bool:
        """The value of an ``io.statefun.types/bool``."""
        return self._builtin(("io.statefun.types/bool",), "a bool")

    def _builtin(self, typenames: tuple[str, ...], what: str) -> typing.Any:
        if self.typename not in typenames:
            raise TypeError(f"the state is {self.typename}, not {what} ({' or '.join(typenames)})")
        return BUILTIN_TYPES[self.typename].serializer().deserialize(self.value)

    # -- making new values ---------------------------------------------------------------------------

    @classmethod
    def of(cls, value: typing.Any, type: Type | str, expire_at: int | None = None) -> SavedState:
        """``value`` as a state of ``type``: an SDK Type (``IntType``, ``make_json_type(...)``, ...) or the
        typename of a built-in type (``"io.statefun.types/string"``)."""
        if isinstance(type, str):
            builtin = BUILTIN_TYPES.get(type)
            if builtin is None:
                raise ValueError(f"{type!r} is not a built-in type ({', '.join(BUILTIN_TYPES)}): give its Type, "
                                 f"or use SavedState.of_json for a JSON type")
            type = builtin
        return cls(type.typename, type.serializer().serialize(value), expire_at)

    @classmethod
    def of_json(cls, typename: str, value: typing.Any, expire_at: int | None = None) -> SavedState:
        """``value`` as a state of the JSON type ``typename`` (encoded as ``make_json_type`` does)."""
        return cls(typename, json.dumps(value, ensure_ascii=False).encode("utf-8"), expire_at)

    def replace(self, **changes: typing.Any) -> SavedState:
        """A copy with some fields changed, e.g. ``state.replace(expire_at=None)``."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass
class TransformResult:
    """What a transform did: addresses seen, changed (their state differs) and dropped (no state left),
    the spec rows left out, and the states whose values now have more than one type."""

    addresses: int = 0
    changed: int = 0
    dropped: int = 0
    counts: dict[str, int] = dataclasses.field(default_factory=dict)  # rows per table written
    dropped_specs: list[SpecRow] = dataclasses.field(default_factory=list)
    mixed_types: dict[tuple[str, str], list[str]] = dataclasses.field(default_factory=dict)  # (type, name) -> typenames


def transform_savepoint(source: str, target: str, function: TransformFunction,
                        progress: Progress | None = None) -> TransformResult:
    """Transforms the savepoint at ``source`` into a new one at ``target`` (paths or URLs, as ``storage``
    takes them); ``target`` must not exist, and is not written when anything fails."""
    storage.check_new(target)
    with storage.reading(source) as path, SavepointReader(path, describe=source) as reader:
        rows = sum(reader.manifest.counts.values())
        reader.verify(None if progress is None else lambda done: progress("verifying", done, rows))
        with storage.writing(target) as out:
            writer = SavepointWriter(out)
            manifest = reader.manifest
            try:
                result = transform(reader, writer, function, progress)
                written = writer.finish(application=manifest.application, source_backend=manifest.source_backend,
                                        partitions=manifest.partitions, mode=manifest.mode,
                                        created_ms=manifest.created_ms)
            except (sqlite3.Error, OSError) as error:  # the reader's own errors are SavepointErrors: the writer's
                writer.abort()
                raise SavepointError(f"cannot write {target}: {error} (is its disk full?)") from error
            except BaseException:
                writer.abort()
                raise
            result.counts = written.counts
    return result


def transform(reader: SavepointReader, writer: SavepointWriter, function: TransformFunction,
              progress: Progress | None = None) -> TransformResult:
    """Writes ``reader``'s savepoint through ``function`` into ``writer`` (the caller finishes it)."""
    from pystatefun.runtime.envelope import decode_value

    result = TransformResult()
    addresses = 0
    if progress is not None:
        try:
            addresses = sum(counts["addresses"] for counts in reader.counts_by_type().values())
        except sqlite3.DatabaseError as error:
            raise SavepointError(f"{reader.name} is damaged: reading table state failed ({error})") from error
    other_rows = sum(n for table, n in reader.manifest.counts.items() if table != "state")
    # (function type, state name) -> the typenames its values have after the transform; a handful per type
    types: dict[tuple[str, str], set[str]] = {}
    for typename, id, state_rows in reader.states_by_address():
        result.addresses += 1
        address = _address(typename, id)
        before: dict[str, SavedState] = {}
        for row in state_rows:
            try:
                typed = decode_value(row.value)
            except Exception as e:  # protobuf's DecodeError
                raise SavepointError(f"{reader.name} is damaged: state {row.name!r} of {_named(address)} is not a "
                                     f"TypedValue ({e})") from None
            before[row.name] = SavedState(typed.typename, typed.value, row.expire_at)
        after = _call(function, address, dict(before))  # a copy: the function may change it in place
        changed = len(after) != len(before)
        for row in state_rows:
            name = row.name
            state = after.get(name)
            if state is not None and state == before[name]:
                writer.write((row,))  # unchanged: its bytes as they were
        for name, state in after.items():
            seen = types.get((typename, name))
            if seen is None:
                seen = types[(typename, name)] = set()
            seen.add(state.typename)
            if before.get(name) != state:
                changed = True
                writer.write((StateRow(typename, id, name, _typed(state).SerializeToString(), state.expire_at),))
        result.changed += changed
        result.dropped += not after
        if progress is not None and result.addresses % _PROGRESS_EVERY == 0:
            progress("transforming", result.addresses, addresses)
    if progress is not None:
        progress("transforming", result.addresses, addresses)
    copied = 0
    for table in TABLES:
        if table == "state":
            continue
        for row in reader.rows(table):
            copied += 1
            if progress is not None and copied % 10_000 == 0:
                progress("copying", copied, other_rows)
            if isinstance(row, SpecRow) and any(t != row.type_typename for t in types.get((row.typename, row.name), ())):
                result.dropped_specs.append(row)
                continue
            writer.write((row,))
    if progress is not None:
        progress("copying", copied, other_rows)
    result.mixed_types = {key: sorted(names) for key, names in sorted(types.items()) if len(names) > 1}
    return result


def _address(typename: str, id: str) -> SdkAddress:
    namespace, _, name = typename.rpartition("/")
    return SdkAddress(namespace, name, id, typename)


def _named(address: SdkAddress) -> str:
    return f"{address.typename}/{address.id}"


def _typed(state: SavedState) -> TypedValue:
    from pystatefun.wire.request_reply_pb2 import TypedValue

    return TypedValue(typename=state.typename, has_value=True, value=state.value)


def _call(function: TransformFunction, address: SdkAddress, states: dict[str, SavedState]) -> dict[str, SavedState]:
    """The function's answer for one address, checked; anything wrong is a TransformError naming it."""
    try:
        answer = function(address, states)
    except Exception as e:
        from pystatefun.loading import _origin

        code = getattr(function, "__code__", None)
        folder = Path(code.co_filename).parent if code is not None else None
        raise TransformError(f"transform failed at address {_named(address)}: {type(e).__name__}: "
                             f"{' '.join(str(e).split())}{_origin(e, folder)}") from e
    if answer is None:
        return {}
    if not isinstance(answer, dict):
        raise TransformError(f"transform failed at address {_named(address)}: the function returned "
                             f"{type(answer).__name__}, not a dict of state name -> SavedState (or None to drop the "
                             f"address's state)")
    for name, state in answer.items():
        problem = None
        if not isinstance(name, str) or not name:
            problem = f"a state name is {name!r}, not a non-empty str"
        elif not isinstance(state, SavedState):
            problem = f"state {name!r} is {type(state).__name__}, not a SavedState (make one with SavedState.of(...))"
        elif not isinstance(state.typename, str) or "/" not in state.typename:
            problem = f"state {name!r} has typename {state.typename!r}, not 'namespace/name'"
        elif not isinstance(state.value, bytes):
            problem = f"state {name!r} has a value of {type(state.value).__name__}, not bytes (use SavedState.of)"
        elif state.expire_at is not None and (not isinstance(state.expire_at, int) or isinstance(state.expire_at, bool)):
            problem = f"state {name!r} has expire_at {state.expire_at!r}, not epoch milliseconds (an int) or None"
        if problem is not None:
            raise TransformError(f"transform failed at address {_named(address)}: {problem}")
    return answer
