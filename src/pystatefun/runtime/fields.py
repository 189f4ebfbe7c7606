"""The fields of the Runtime, declared once for the parts it is made of (processor.py).

Runtime is a composition of parts (routing, scheduling, effects, commits, operations), each a class of its
own module that uses fields Runtime.__init__ sets. When the hot modules are compiled (mypyc; docs/runtime.md,
"The compiled build") a class may have only one base that is not a trait, and a trait can use only the fields
it declares: so each part is a trait deriving from this one, which declares them all. Each field is
declared typing.Any (no conversions or checks in compiled code); the comment is its type.
Without a compiler, ``trait`` does nothing.
"""

from __future__ import annotations

import typing

from mypy_extensions import trait


@trait
class RuntimeFields:
    _commit_lock: typing.Any
    _commit_now: typing.Any
    _committing: typing.Any  # asyncio.Task | None
    _invocation: typing.Any
    _invocations: typing.Any  # set[asyncio.Task]
    _next_seq: typing.Any
    _ready: typing.Any  # collections.deque[Mailbox]
    _tasks: typing.Any  # list[asyncio.Task]
    _timers_changed: typing.Any
    _wake: typing.Any
    clock: typing.Any
    commit_interval: typing.Any
    commit_when_idle: typing.Any
    commits: typing.Any
    egresses: typing.Any
    epoch: typing.Any  # Epoch | None
    failed: typing.Any  # asyncio.Future | None
    flows: typing.Any
    max_backlog: typing.Any
    max_cached_addresses: typing.Any
    max_volatile: typing.Any
    on_commit: typing.Any  # typing.Callable[[float, int], None] | None
    on_seal: typing.Any  # list[typing.Callable[[Epoch], None]]
    partitions: typing.Any
    processors: typing.Any
    recent_commits: typing.Any
    reply_sink: typing.Any  # ReplySink | None
    resolve: typing.Any
    running: typing.Any
    spill: typing.Any
    stats: typing.Any  # dict[str, FunctionStats]
    store: typing.Any
    timers: typing.Any
    tracing: typing.Any
    unavailable: typing.Any  # str | None
