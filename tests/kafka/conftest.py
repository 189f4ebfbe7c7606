"""Kafka brokers for the tests: real Apache Kafka (tests/support/kafka.py), never a fake.

`kafka_bootstrap` is shared by the whole session: a broker that CI started before the tests
(scripts/kafka start; its address in PYSTATEFUN_KAFKA_BOOTSTRAP), else a single node started here. Tests
using it must not depend on its state: each creates topics and groups with names of its own.
`kafka_cluster3` is a three-node cluster of the module's own, for fault tests that stop and restart nodes.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from support.kafka import KafkaCluster, shared_broker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with shared_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="module")
def kafka_cluster3() -> Iterator[KafkaCluster]:
    with KafkaCluster(nodes=3) as cluster:
        yield cluster
