"""What passes through the runtime lately: messages per flow (sender -> target) and epoch commits.

A flow's sender is a function type or the ingress a message came from; its target a function type or
an egress. The admin API draws the application's function graph from the flows (``GET /graph``) and
sums them for its overview (``GET /overview``). Messages are counted where they are sent: a batch's
messages, delayed messages and egress records as its effects are applied (effects.py), an ingress's
messages as it routes them (io/playground.py, io/kafka.py). Messages read back from the log (sent by
another worker, or read again after a restart) are not counted again: whoever sent them counted them.

The hot path is one call and a dict increment per message. The clock is not read per message: each
commit (commits.py) and each read moves what was counted since into the counts of the second it is then
(``tick``), so a message counts in the second its epoch committed, a fraction of a second late at most.
The seconds of the last WINDOW_SECONDS are kept apart and folded into the totals after
that, so a rate is computed only when someone reads it. Function types are counted under their own name for the first
MAX_FUNCTION_TYPE_LABELS types, like the metrics (cardinality.py), so the flows stay bounded whatever
type names a namespace binding takes.
"""

from __future__ import annotations

import collections
import time
import typing
from dataclasses import dataclass

from pystatefun.runtime.cardinality import MAX_FUNCTION_TYPE_LABELS, FunctionTypeLabels
from pystatefun.runtime.replies import REPLY_TYPENAME

WINDOW_SECONDS = 10
# the kinds of flow: between functions, from an ingress, to an egress
SENT, FROM_INGRESS, TO_EGRESS = 0, 1, 2
# raw flows remembered with their counted (capped) form; beyond this many the cap is applied per message
MAX_REMEMBERED_FLOWS = 10_000
RECENT_COMMITS = 4096  # commits kept for the commit rate and latency (a window's worth up to 400/s)

Edge = tuple[int, str, str]  # (kind, sender, target)


@dataclass(frozen=True, slots=True)
class Flow:
    """Messages from ``sender`` to ``target`` (node ids: ``function:<type>``, ``ingress:<id>``,
    ``egress:<id>``): how many since the process started, and how many per second lately."""

    sender: str
    target: str
    messages: int
    per_s: float


class Flows:
    """Counts of messages per flow, in one-second buckets (see the module docstring)."""

    def __init__(self, max_function_types: int = MAX_FUNCTION_TYPE_LABELS, window: int = WINDOW_SECONDS,
                 clock: typing.Callable[[], float] = time.monotonic):
        if window < 1:
            raise ValueError(f"the window of the flow rates is at least 1 second, got {window}")
        self.window = window
        self.clock = clock
        self._label = FunctionTypeLabels(max_function_types)
        self._counted: dict[Edge, Edge] = {}  # a raw flow -> the flow it is counted under
        self._started = clock()
        self._current: dict[Edge, int] = {}  # the counts since the last tick
        self._recent: collections.deque[tuple[int, dict[Edge, int]]] = collections.deque()  # the window's seconds
        self._past: dict[Edge, int] = {}  # the counts of every second before the window
        # the ingress that answers requests waiting for a reply (io/playground.py): a function's message to
        # a reply address is a flow to it
        self.replies_to: str | None = None

    def count(self, kind: int, sender: str, target: str) -> None:
        """One message of a flow: SENT (a message or delayed message between function types), FROM_INGRESS
        (``sender`` is the ingress id) or TO_EGRESS (an egress record; ``target`` is the egress id)."""
        edge = (kind, sender, target)
        counted = self._counted.get(edge)
        if counted is None:
            counted = self._cap(edge)
        current = self._current
        current[counted] = current.get(counted, 0) + 1

    def tick(self) -> int:
        """Moves what was counted since the last tick into the second it is now (after each commit), and
        the seconds that left the window into the totals; returns the second."""
        second = int(self.clock())
        recent = self._recent
        if self._current:
            if recent and recent[-1][0] == second:
                counts = recent[-1][1]
                for edge, count in self._current.items():
                    counts[edge] = counts.get(edge, 0) + count
                self._current.clear()
            else:
                recent.append((second, self._current))
                self._current = {}
        past = self._past
        while recent and recent[0][0] <= second - self.window:
            for edge, count in recent.popleft()[1].items():
                past[edge] = past.get(edge, 0) + count
        return second

    def _cap(self, edge: Edge) -> Edge:
        kind, sender, target = edge
        label = self._label
        counted = (kind, sender if kind == FROM_INGRESS else label(sender), target if kind == TO_EGRESS else label(target))
        if len(self._counted) < MAX_REMEMBERED_FLOWS:
            self._counted[edge] = counted
        return counted

    def flows(self) -> list[Flow]:
        """Every flow seen, with its messages since the start and its rate over the last WINDOW_SECONDS."""
        second = self.tick()
        now = self.clock()
        # the window: the seconds after second - window, this one included, but not before the start
        covered = max(1.0, now - max(second - self.window + 1, self._started))
        lately: dict[Edge, int] = {}
        for _, counts in self._recent:
            for edge, count in counts.items():
                lately[edge] = lately.get(edge, 0) + count
        flows = []
        for edge in {**self._past, **lately}:
            ends = self._nodes(edge)
            if ends is not None:
                recent = lately.get(edge, 0)
                flows.append(Flow(*ends, self._past.get(edge, 0) + recent, recent / covered))
        return flows

    def _nodes(self, edge: Edge) -> tuple[str, str] | None:
        kind, sender, target = edge
        if kind == FROM_INGRESS:
            return f"ingress:{sender}", f"function:{target}"
        if kind == TO_EGRESS:
            return f"function:{sender}", f"egress:{target}"
        if target == REPLY_TYPENAME:  # an answer to a request waiting at the ingress
            # with no ingress that answers, a reply is a dead letter (listed there), not a flow
            return None if self.replies_to is None else (f"function:{sender}", f"ingress:{self.replies_to}")
        return f"function:{sender}", f"function:{target}"


class RecentCommits:
    """When each of the last RECENT_COMMITS epoch commits ended and how long it took: the commit rate and
    latency of the last seconds, recorded once per commit (a few to a few hundred times a second)."""

    def __init__(self, keep: int = RECENT_COMMITS, clock: typing.Callable[[], float] = time.monotonic):
        self.clock = clock
        self._started = clock()
        self._commits: collections.deque[tuple[float, float]] = collections.deque(maxlen=keep)

    def add(self, seconds: float) -> None:
        self._commits.append((self.clock(), seconds))

    def within(self, window: float = WINDOW_SECONDS) -> tuple[float, list[float]]:
        """(commits per second, their durations in seconds) over the last ``window`` seconds, or over the
        commits kept when more than RECENT_COMMITS happened in it."""
        now = self.clock()
        durations = [seconds for at, seconds in self._commits if at > now - window]
        span = min(window, max(now - self._started, 1.0))  # a runtime that started lately: since then
        if len(durations) == len(self._commits) == self._commits.maxlen:  # all those kept are in the window
            span = max(now - self._commits[0][0], 1e-3)
        return len(durations) / span, durations
