"""The pure parts of the transport: URL splitting, settings validation, backoff."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from pystatefun.runtime.retry import DEFAULT_RETRYABLE_STATUS, Backoff, RetryPolicy
from pystatefun.runtime.transport import FunctionUrl, TransportSettings, parse_function_url


@pytest.mark.parametrize(
    "url, request_url, socket, tls",
    [
        ("http://fn:8000/statefun/greeter", "http://fn:8000/statefun/greeter", None, False),
        ("https://fn/statefun?a=b#frag", "https://fn/statefun?a=b", None, True),
        ("http+unix:///run/fn/functions.sock/statefun", "http://localhost/statefun", "/run/fn/functions.sock", False),
        ("https+unix:///run/fn.sock", "https://localhost/", "/run/fn.sock", True),
        ("http+unix:///a.sock/b.sock/x?q=1", "http://localhost/b.sock/x?q=1", "/a.sock", False),
    ],
)
def test_parse_function_url(url: str, request_url: str, socket: str | None, tls: bool) -> None:
    assert parse_function_url(url) == FunctionUrl(url, request_url, socket, tls)


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://fn/statefun", "scheme"),
        ("http:///statefun", "no host"),
        ("http://fn:99999/", "(?i)port"),
        ("http+unix:///run/fn/statefun", ".sock"),
        ("http+unix://fn.sock/statefun", "no host"),
        ("http+unix:///" + "d" * 120 + "/fn.sock/statefun", "longer than"),
    ],
)
def test_malformed_function_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_function_url(url)


def test_default_retryable_statuses() -> None:
    assert RetryPolicy().retryable_status == DEFAULT_RETRYABLE_STATUS
    assert {408, 429, 500, 503, 599} <= DEFAULT_RETRYABLE_STATUS
    assert not {400, 401, 404, 409, 413} & DEFAULT_RETRYABLE_STATUS


def test_retry_policy_accepts_a_tuple_and_validates() -> None:
    assert RetryPolicy(retryable_status=(503, 503)).retryable_status == frozenset({503})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="max_backoff"):
        RetryPolicy(initial_backoff=timedelta(seconds=2), max_backoff=timedelta(seconds=1))
    with pytest.raises(ValueError, match="HTTP statuses"):
        RetryPolicy(retryable_status=frozenset({42}))


def test_backoff_doubles_with_equal_jitter_up_to_the_cap() -> None:
    backoff = Backoff(0.01, 0.08, random.Random(7))
    delays = [backoff.next() for _ in range(8)]
    caps = [0.01, 0.02, 0.04, 0.08, 0.08, 0.08, 0.08, 0.08]
    for delay, cap in zip(delays, caps):
        assert cap / 2 <= delay <= cap
    assert len(set(delays)) == len(delays)  # jittered


def test_backoff_survives_many_attempts() -> None:
    backoff = Backoff(0.01, 5.0)
    for _ in range(5000):
        assert backoff.next() <= 5.0


def test_transport_settings_defaults_are_the_async_transport() -> None:
    s = TransportSettings()
    assert (s.call, s.connect, s.read, s.pool_ttl, s.pool_size, s.payload_max_bytes) == (
        timedelta(minutes=2), timedelta(seconds=20), None, timedelta(seconds=15), 1024, 32 * 1024 * 1024,
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"call": timedelta(0)}, "call"),
        ({"read": timedelta(seconds=-1)}, "read"),
        ({"pool_size": 0}, "pool_size"),
        ({"payload_max_bytes": 0}, "payload_max_bytes"),
        ({"client_key": "k.pem"}, "client_cert"),
    ],
)
def test_transport_settings_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TransportSettings(**kwargs)
