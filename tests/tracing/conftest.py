"""Fixtures of the tracing tests: an in-memory span exporter, and a real OTLP receiver."""

from __future__ import annotations

import typing

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pystatefun.tracing.spans import Tracing

from .receiver import OtlpReceiver


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> typing.Iterator[Tracing]:
    """Tracing into ``exporter``, every span sampled (this provider only: the global one is left alone)."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider)
    provider.shutdown()


@pytest.fixture
def receiver() -> typing.Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.stop()


def otel_env(receiver: OtlpReceiver, service: str = "pystatefun-test") -> dict[str, str]:
    """The environment that sends a process's spans to ``receiver``, exported every 50 ms."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": service,
            "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_TRACES_SAMPLER": "parentbased_always_on"}
