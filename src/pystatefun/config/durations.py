"""Durations as StateFun writes them: Flink's ``TimeUtils.parseDuration`` syntax.

module.yaml files written for StateFun say ``call: 2 min``, ``connect: 20s`` or ``transactionTimeout:
15min``, so pystatefun reads exactly that syntax: a whole number, optional spaces, an optional unit
(case-insensitive); no unit means milliseconds. Fractions and negative numbers are not part of it.
"""

from __future__ import annotations

import re
from datetime import timedelta

# unit label -> nanoseconds per unit. Flink's labels, plus the plurals ("mins", "nanos", ...) and the
# ASCII "us" for microseconds, which Flink lacks but people write.
_UNITS: dict[str, int] = {}
for _labels, _nanos in [
    (("ns", "nano", "nanos", "nanosecond", "nanoseconds"), 1),
    (("µs", "us", "micro", "micros", "microsecond", "microseconds"), 1_000),
    (("ms", "milli", "millis", "millisecond", "milliseconds"), 1_000_000),
    (("s", "sec", "secs", "second", "seconds"), 1_000_000_000),
    (("m", "min", "mins", "minute", "minutes"), 60 * 1_000_000_000),
    (("h", "hour", "hours"), 3600 * 1_000_000_000),
    (("d", "day", "days"), 86400 * 1_000_000_000),
]:
    for _label in _labels:
        _UNITS[_label] = _nanos

_SYNTAX = re.compile(r"([0-9]+)\s*([^0-9]*)")
EXAMPLES = "'2 min', '30s', '500ms'"


def parse_duration(text: str | int) -> timedelta:
    """Parses a duration like ``"1 min"``, ``"10 sec"``, ``"2m"``, ``"20s"``, ``"15min"``, ``"1day"``,
    ``"500 ms"`` or ``"1 h"``; a plain number (or an ``int``) is milliseconds.

    Units: ns/nano(s)/nanosecond(s), µs/us/micro(s)/microsecond(s), ms/milli(s)/millisecond(s),
    s/sec(s)/second(s), m/min(s)/minute(s), h/hour(s), d/day(s). Nanoseconds are rounded down to whole
    microseconds (``timedelta``'s resolution). Raises ``ValueError`` saying what is accepted.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"invalid duration {text!r}: expected a string like {EXAMPLES} or a number of milliseconds")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid duration {text}: durations cannot be negative")
        return timedelta(milliseconds=text)
    match = _SYNTAX.fullmatch(text.strip())
    unit = match.group(2).strip().lower() if match else None
    if match is None or (unit and unit not in _UNITS):
        raise ValueError(f"invalid duration {text!r} (use e.g. {EXAMPLES})")
    nanos = int(match.group(1)) * (_UNITS[unit] if unit else _UNITS["ms"])
    try:
        return timedelta(microseconds=nanos // 1000)
    except OverflowError:
        raise ValueError(f"invalid duration {text!r}: too long (at most {timedelta.max.days} days)") from None


def format_duration(value: timedelta) -> str:
    """The shortest exact way to write ``value`` in the syntax above (for messages and docs)."""
    micros = value // timedelta(microseconds=1)
    for label, per in (("d", 86_400_000_000), ("h", 3_600_000_000), ("min", 60_000_000), ("s", 1_000_000), ("ms", 1_000)):
        if micros and micros % per == 0:
            return f"{micros // per} {label}"
    return f"{micros} us"
