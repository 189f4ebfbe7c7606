"""Tracing as the standard OpenTelemetry environment variables configure it.

Off unless an exporter is configured: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, or any exporter an
installed package registers; ``none`` is off), or an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), which means ``otlp``. ``OTEL_SDK_DISABLED=true`` turns it off
whatever else is set. Everything else is the OpenTelemetry SDK's own reading of the environment: the
sampler (``OTEL_TRACES_SAMPLER``, ``OTEL_TRACES_SAMPLER_ARG``), the resource (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``), the exporter's endpoint, headers and timeouts, the batch processor's
limits (``OTEL_BSP_*``).
"""

from __future__ import annotations

import os
import typing

if typing.TYPE_CHECKING:
    from pystatefun.tracing.spans import Tracing

# the OTLP protocols (OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL) and the exporter entry point serving each
_OTLP_EXPORTERS = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
DEFAULT_SERVICE_NAME = "pystatefun"


class TracingUnavailable(RuntimeError):
    """Tracing is configured, but what it needs is not installed."""


def exporter_names(env: typing.Mapping[str, str]) -> list[str]:
    """The exporters ``env`` configures (empty: tracing is off)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [name.strip() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
    if not names and (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        names = ["otlp"]
    return [name for name in names if name != "none"]


def from_environment(env: typing.Mapping[str, str] | None = None) -> Tracing | None:
    """Tracing as ``env`` (the process's environment) configures it, installed as OpenTelemetry's global
    tracer provider so that spans the functions make themselves (embedded functions) join the same traces
    and exporters; None when no exporter is configured."""
    env = os.environ if env is None else env
    names = exporter_names(env)
    if not names:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as e:
        raise TracingUnavailable(
            f"tracing is configured (exporters: {', '.join(names)}), but OpenTelemetry is not installed: "
            f"pip install 'pystatefun[otel]' ({e})"
        ) from None
    from pystatefun.tracing.spans import Tracing

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    root, sampler = _sampler(env)
    provider = TracerProvider(resource=resource, sampler=sampler)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, env)))
    trace.set_tracer_provider(provider)
    return Tracing(provider, root)


def _sampler(env: typing.Mapping[str, str]) -> tuple[typing.Any, typing.Any]:
    """(the root sampler, the sampler) that OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name. The root
    sampler decides the requests that come without a trace, which the ingress asks before it makes a
    span (tracing/spans.py); for a sampler the SDK's standard names do not cover (one an installed package
    registers), (None, None): the SDK reads the variables itself, and the ingress asks it."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    base = name.removeprefix("parentbased_")
    if base == "always_on":
        root = ALWAYS_ON
    elif base == "always_off":
        root = ALWAYS_OFF
    elif base == "traceidratio":
        argument = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            root = TraceIdRatioBased(float(argument))
        except ValueError:
            raise TracingUnavailable(
                f"OTEL_TRACES_SAMPLER_ARG {argument!r} is not a ratio between 0 and 1 (0.01: 1% of requests)") from None
    else:
        return None, None
    return root, ParentBased(root) if name != base else root


def _exporter(name: str, env: typing.Mapping[str, str]) -> typing.Any:
    """The span exporter called ``name``, found as the SDK finds it (its entry point); it reads its own
    settings from the environment."""
    from importlib.metadata import entry_points

    entry = name
    if name == "otlp":
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
        entry = _OTLP_EXPORTERS.get(protocol.strip())
        if entry is None:
            raise TracingUnavailable(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not one of {', '.join(_OTLP_EXPORTERS)}")
    found = entry_points(group="opentelemetry_traces_exporter", name=entry)
    if not found:
        hint = (" (pip install opentelemetry-exporter-otlp-proto-grpc for grpc; the otel extra brings http/protobuf)"
                if entry == "otlp_proto_grpc" else "")
        raise TracingUnavailable(f"OTEL_TRACES_EXPORTER {name!r}: no such span exporter is installed{hint}")
    return next(iter(found)).load()()
