"""OpenTelemetry tracing, the ``otel`` extra (``pip install pystatefun[otel]``; docs/tracing.md).

``from_environment`` (config.py) builds it from the standard ``OTEL_*`` variables, or gives None when they
configure no exporter: then nothing here is imported and the runtime checks one ``is None`` per batch.
``Tracing`` (spans.py) makes the spans and carries the trace context in messages. Neither module imports
OpenTelemetry at the top of this package, so the runtime imports it without the extra installed.
"""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    from pystatefun.tracing.spans import Tracing

__all__ = ["Tracing", "OK", "PARKED", "DEAD_LETTER"]

# the outcomes of an invocation batch (its span's pystatefun.outcome)
OK, PARKED, DEAD_LETTER = "ok", "parked", "dead-letter"
