"""Kafka brokers for the tests: real Apache Kafka (tests/support/kafka.py), never a fake.

`kafka_bootstrap` is shared by the whole session: a broker that CI started before the tests
(scripts/kafka start; its address in PYSTATEFUN_KAFKA_BOOTSTRAP), else a single node started here. Tests
using it must not depend on its state: each creates topics and groups with names of its own.
`kafka_cluster3` is a three-node cluster of the module's own, for fault tests that stop and restart nodes.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from support.kafka import BOOTSTRAP_ENV, KafkaCluster


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield external
        return
    with KafkaCluster(nodes=1) as cluster:
        yield cluster.bootstrap_servers


@pytest.fixture(scope="module")
def kafka_cluster3() -> Iterator[KafkaCluster]:
    with KafkaCluster(nodes=3) as cluster:
        yield cluster
