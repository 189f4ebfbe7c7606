"""When to try a remote call again and how long to wait: the one retry policy of every transport type.

StateFun's two transports disagree (spec §2.7, §8 item 8): the async/Netty client retries every failure,
including a 400 that will never succeed, and OkHttp fails fast on most 4xx. pystatefun has one policy for
both: connection errors, timeouts and the statuses in ``retryable_status`` are retried with jittered
exponential backoff inside the call budget; anything else fails at once so that a deterministic error
reaches the operator in milliseconds instead of after the whole budget.

HTTP 500 is what a function server answers when the function raised: every StateFun SDK does (ours with
a body saying "the function raised <Type>"), while the network and the proxies and gateways in front of a
function server fail differently (a refused or reset connection, a timeout, 502, 503, 504). StateFun
retries a 500 like every other failure until the call budget (two minutes) is spent, and then fails the
whole job; a function that raises on every call (a bug, a state it cannot read) thus stalls its address
for two minutes without a word. pystatefun instead ends a call after ``function_error_max_attempts``
attempts answered 500 (3 by default: the 10 ms and 20 ms backoffs in between give a function that failed
by chance two more tries) and parks the address with the function's error, where an operator sees it
and resumes it after the fix; network failures are still retried for the call budget. Only the 500s
count, so a call that also met a restarting server (502s, timeouts) is not cut short by them. ``None``
(``null`` in module.yaml) restores StateFun's behaviour, for a gateway that answers 500 for its own
transient failures.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta

DEFAULT_RETRYABLE_STATUS: frozenset[int] = frozenset({408, 429, *range(500, 600)})
"""Request timeout, too many requests and every server error: what may succeed if asked again."""

FUNCTION_ERROR_STATUS = 500
"""The status of an attempt whose function raised (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed attempt is retried; the call budget (``TransportSettings.call``) bounds it all.

    ``max_attempts`` counts every attempt including the first (None: as many as the budget allows);
    ``function_error_max_attempts`` ends the call at its that-many-th attempt answered HTTP 500 (None: the
    500s are retried like any other failure).
    """

    max_attempts: int | None = None
    function_error_max_attempts: int | None = 3
    initial_backoff: timedelta = timedelta(milliseconds=10)
    max_backoff: timedelta = timedelta(seconds=5)
    retryable_status: frozenset[int] = field(default=DEFAULT_RETRYABLE_STATUS)

    def __post_init__(self) -> None:
        # config hands over a tuple; a frozenset makes ``status in policy.retryable_status`` cheap and the
        # policy hashable
        object.__setattr__(self, "retryable_status", frozenset(self.retryable_status))
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"retry max_attempts must be at least 1 (the first attempt counts), got {self.max_attempts}")
        if self.function_error_max_attempts is not None and self.function_error_max_attempts < 1:
            raise ValueError(
                f"retry function_error_max_attempts must be at least 1 (the first attempt counts), got {self.function_error_max_attempts}"
            )
        if self.initial_backoff < timedelta(0):
            raise ValueError(f"retry initial_backoff must not be negative, got {self.initial_backoff}")
        if self.max_backoff < self.initial_backoff:
            raise ValueError(
                f"retry max_backoff ({self.max_backoff}) must not be smaller than initial_backoff ({self.initial_backoff})"
            )
        bad = sorted(s for s in self.retryable_status if not 100 <= s <= 599)
        if bad:
            raise ValueError(f"retryable_status holds values that are not HTTP statuses: {bad}")

    def backoff(self, rng: random.Random | None = None) -> Backoff:
        """The delays between the attempts of one call."""
        return Backoff(self.initial_backoff.total_seconds(), self.max_backoff.total_seconds(), rng)


class Backoff:
    """Exponential backoff with *equal jitter*: the n-th delay (n = 0, 1, ...) is drawn uniformly from
    ``[c/2, c]`` where ``c = min(max, initial * 2**n)``.

    Equal rather than full jitter (``[0, c]``): full jitter may draw a delay of almost nothing, and a
    function that refuses connections at once would then be hammered; half the nominal delay is always
    waited, the other half spreads the retries of the many addresses that fail together when an endpoint
    goes down.
    """

    __slots__ = ("_initial", "_max", "_rng", "_attempt")

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None):
        self._initial = initial
        self._max = maximum
        self._rng = rng or random
        self._attempt = 0

    def nominal(self) -> float:
        """The cap of the next delay, before jitter."""
        # 2**n overflows a float only after ~1000 doublings; stop doubling once the cap is reached
        exponent = min(self._attempt, 64)
        return min(self._max, self._initial * (2**exponent))

    def next(self) -> float:
        """The next delay in seconds."""
        cap = self.nominal()
        self._attempt += 1
        return cap / 2 + self._rng.uniform(0, cap / 2)
