"""The Kafka broker of the session (tests/kafka/conftest.py): the smoke runs' egresses (and the Kafka
backend) need one."""

from kafka.conftest import kafka_bootstrap  # noqa: F401 - a fixture
