"""Kinesis emulators for the Kinesis tests (tests/support/kinesis.py): every test taking ``emulator`` runs
against moto's server and against kinesalite, one process of each per test module."""

from __future__ import annotations

import re
import uuid
from typing import Iterator

import pytest

from support.kinesis import EMULATORS, KinesisEmulator


@pytest.fixture(scope="module", params=sorted(EMULATORS), ids=sorted(EMULATORS))
def emulator(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KinesisEmulator]:
    """A running emulator shared by the module's tests (each uses streams of its own: ``stream_name``);
    stopped at the end of the module, whatever the tests did to it."""
    with EMULATORS[request.param](tmp_path_factory.mktemp(f"kinesis-{request.param}")) as running:
        yield running


@pytest.fixture
def stream_name(request: pytest.FixtureRequest) -> str:
    """A stream name no other test uses: the test's name (to find it in an emulator) and a random suffix."""
    prefix = re.sub(r"[^a-zA-Z0-9_.-]", "-", request.node.name)[:100]
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# the session's Kafka broker (tests/kafka/conftest.py), for the exactly-once Kafka egress and the Kafka backend
from kafka.conftest import kafka_bootstrap  # noqa: E402,F401
