"""The health of a remote function endpoint, as its attempts tell it: ok, or failing since when and why.

The transport reports every attempt of every call here. The log says it at once when an endpoint starts
failing (a WARNING with the cause, the URL and how long the call is retried) and when it recovers, rather
than staying silent while a call spends its budget; /functions, /health and the metrics show the state.
One WARNING per change of state, not per call: an endpoint that is down fails the calls of every address
at once, and each of those addresses says so again (with its reason) when it parks.
"""

from __future__ import annotations

import logging
import time
import typing

log = logging.getLogger("pystatefun.runtime")


class EndpointHealth:
    """Ok or failing, for one endpoint (its ``urlPathTemplate``), with counts for the metrics."""

    def __init__(self, endpoint: str, clock: typing.Callable[[], float] = time.time):
        self.endpoint = endpoint
        self.clock = clock
        self.last_attempt_at: float | None = None
        self.failing_since: float | None = None  # None: the last attempt succeeded (or none was made)
        self.last_error = ""
        self.failed_attempts = 0

    def succeeded(self, url: str) -> None:
        now = self.clock()
        self.last_attempt_at = now
        if self.failing_since is not None:
            log.warning("endpoint %s recovered: %s answered after failing for %.1f s",
                        self.endpoint, url, now - self.failing_since, extra={"endpoint": self.endpoint})
            self.failing_since = None
            self.last_error = ""

    def failed(self, url: str, reason: str, retrying: str | None) -> None:
        """An attempt failed for ``reason``; ``retrying`` says how the call goes on (None: it fails now)."""
        now = self.clock()
        self.last_attempt_at = now
        self.failed_attempts += 1
        self.last_error = f"POST {url}: {reason}"
        outcome = retrying or "not retried: the call fails now and its address parks"
        if self.failing_since is None:
            self.failing_since = now
            log.warning("endpoint %s is failing: POST %s: %s; %s", self.endpoint, url, reason, outcome,
                        extra={"endpoint": self.endpoint})
        else:
            log.debug("endpoint %s still failing: POST %s: %s; %s", self.endpoint, url, reason, outcome,
                      extra={"endpoint": self.endpoint})

    def describe(self) -> dict[str, typing.Any]:
        """For /functions and /health: ``status`` ok, failing (with ``last_error`` and ``failing_since``,
        Unix seconds) or unknown (no attempt yet)."""
        if self.last_attempt_at is None:
            return {"status": "unknown", "detail": "not called yet"}
        if self.failing_since is None:
            return {"status": "ok", "last_call_at": round(self.last_attempt_at, 3)}
        return {"status": "failing", "last_call_at": round(self.last_attempt_at, 3),
                "failing_since": round(self.failing_since, 3), "last_error": self.last_error}
