from datetime import timedelta

import pytest

from pystatefun.config import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 min", timedelta(minutes=1)),
        ("10 sec", timedelta(seconds=10)),
        ("2m", timedelta(minutes=2)),
        ("20s", timedelta(seconds=20)),
        ("15min", timedelta(minutes=15)),
        ("15mins", timedelta(minutes=15)),
        ("3 minutes", timedelta(minutes=3)),
        ("1 minute", timedelta(minutes=1)),
        ("1day", timedelta(days=1)),
        ("2 days", timedelta(days=2)),
        ("1d", timedelta(days=1)),
        ("500 ms", timedelta(milliseconds=500)),
        ("500ms", timedelta(milliseconds=500)),
        ("5 millis", timedelta(milliseconds=5)),
        ("7 milliseconds", timedelta(milliseconds=7)),
        ("1 h", timedelta(hours=1)),
        ("2 hours", timedelta(hours=2)),
        ("3 secs", timedelta(seconds=3)),
        ("4 seconds", timedelta(seconds=4)),
        ("1 second", timedelta(seconds=1)),
        ("250us", timedelta(microseconds=250)),
        ("250 µs", timedelta(microseconds=250)),
        ("3 micros", timedelta(microseconds=3)),
        ("4 microseconds", timedelta(microseconds=4)),
        ("5000ns", timedelta(microseconds=5)),
        ("5000 nanos", timedelta(microseconds=5)),
        ("1500 nanoseconds", timedelta(microseconds=1)),  # rounded down to timedelta's resolution
        ("1500", timedelta(milliseconds=1500)),  # no unit: milliseconds
        ("  30 S  ", timedelta(seconds=30)),  # case-insensitive, trimmed
        ("2 MIN", timedelta(minutes=2)),
        ("0", timedelta(0)),
        (1500, timedelta(milliseconds=1500)),
    ],
)
def test_parses_flink_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["2 fortnights", "", "   ", "min", "1.5s", "-1s", "1 min 30 s", "1e3", "s5", "10 mss"])
def test_rejects_other_text_and_says_what_works(text):
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert f"invalid duration {text!r}" in str(caught.value)
    assert "'2 min', '30s', '500ms'" in str(caught.value)


@pytest.mark.parametrize("value", [True, 1.5, None, [1]])
def test_rejects_non_text(value):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(value)


def test_rejects_negative_numbers_and_overflow():
    with pytest.raises(ValueError, match="negative"):
        parse_duration(-5)
    with pytest.raises(ValueError, match="too long"):
        parse_duration("99999999999999 days")


@pytest.mark.parametrize(
    ("value", "text"),
    [(timedelta(minutes=2), "2 min"), (timedelta(seconds=90), "90 s"), (timedelta(days=1), "1 d"), (timedelta(milliseconds=10), "10 ms"), (timedelta(microseconds=3), "3 us")],
)
def test_format_duration_round_trips(value, text):
    assert format_duration(value) == text
    assert parse_duration(text) == value
