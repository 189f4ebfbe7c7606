"""Tracing's configuration by the standard OTEL_* variables: off unless an exporter is configured, and then
nothing of OpenTelemetry is even imported; on with the exporters, sampler and resource they name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pystatefun.tracing.config import TracingUnavailable, exporter_names, from_environment

APPS = Path(__file__).parent / "apps"


@pytest.mark.parametrize("env, names", [
    ({}, []),
    ({"OTEL_SERVICE_NAME": "shop", "OTEL_TRACES_SAMPLER": "always_on"}, []),  # no exporter: off
    ({"OTEL_TRACES_EXPORTER": "none"}, []),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, []),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "console, otlp"}, ["console", "otlp"]),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
])
def test_the_exporters_the_environment_configures(env, names):
    assert exporter_names(env) == names


def test_an_exporter_that_is_not_installed_is_refused_with_what_to_install():
    with pytest.raises(TracingUnavailable, match="'zipkin': no such span exporter"):
        from_environment({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(TracingUnavailable, match="opentelemetry-exporter-otlp-proto-grpc"):
        from_environment({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(TracingUnavailable, match="'http/json' is not one of"):
        from_environment({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_off_imports_nothing_of_opentelemetry():
    result = run_python(
        "import sys\n"
        "import pystatefun.app, pystatefun.cli, pystatefun.runtime.processor\n"
        "from pystatefun.tracing.config import from_environment\n"
        "assert from_environment() is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n",
        {"OTEL_SERVICE_NAME": "shop"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_configured_without_the_extra_says_to_install_it():
    result = run_python(
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if the otel extra were not installed\n"
        "from pystatefun.tracing.config import TracingUnavailable, from_environment\n"
        "try:\n"
        "    from_environment()\n"
        "except TracingUnavailable as e:\n"
        "    print(e)\n",
        {"OTEL_TRACES_EXPORTER": "console"},
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'pystatefun[otel]'" in result.stdout


def test_on_it_installs_the_global_provider_with_the_sampler_and_resource_of_the_environment():
    result = run_python(
        "from opentelemetry import trace\n"
        "from pystatefun.tracing.config import from_environment\n"
        "tracing = from_environment()\n"
        "provider = trace.get_tracer_provider()\n"
        "assert provider is tracing.provider\n"
        "print(provider.resource.attributes['service.name'], provider.resource.attributes['deployment.environment'])\n"
        "print(provider.sampler.get_description())\n",
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
         "OTEL_TRACES_SAMPLER_ARG": "0.01", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"},
    )
    assert result.returncode == 0, result.stderr
    service, sampler = result.stdout.strip().splitlines()
    assert service == "pystatefun test"  # the default service name, when the environment names none
    assert sampler.startswith("ParentBased{root:TraceIdRatioBased{0.01}")


def test_pystatefun_run_refuses_a_tracing_configuration_it_cannot_honour(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pystatefun.cli", "run", str(APPS / "relay.yaml"), "--data-dir", str(tmp_path / "d")],
        env={**os.environ, "OTEL_TRACES_EXPORTER": "zipkin", "INGRESS_PORT": "0"}, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "OTEL_TRACES_EXPORTER 'zipkin': no such span exporter is installed" in result.stderr


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.5, 1.0])
def test_the_ingress_decides_a_root_as_the_sdks_sampler_does(rate):
    """The ingress decides most requests without asking the SDK's sampler (spans.py _root_decision): it
    must decide each trace id as that sampler would."""
    import random

    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, TraceIdRatioBased

    from pystatefun.tracing.spans import _root_decision

    generator = random.Random(22)
    for sampler in (TraceIdRatioBased(rate), ALWAYS_ON if rate == 1.0 else ALWAYS_OFF):
        decide = _root_decision(sampler)
        for trace_id in [generator.getrandbits(128) for _ in range(2000)]:
            assert decide(trace_id) == sampler.should_sample(None, trace_id, "PUT").decision.is_sampled()


def test_a_sampler_ratio_that_is_no_number_is_refused():
    with pytest.raises(TracingUnavailable, match="OTEL_TRACES_SAMPLER_ARG 'one percent' is not a ratio"):
        from_environment({"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "traceidratio",
                          "OTEL_TRACES_SAMPLER_ARG": "one percent"})
