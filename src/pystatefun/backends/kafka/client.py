"""confluent-kafka is an extra (``pip install 'pystatefun[kafka]'``): this module knows whether it is
installed without importing it, so that applications without Kafka never load it."""

from __future__ import annotations

import sys

INSTALL_HINT = "pip install 'pystatefun[kafka]'"


class KafkaClientMissing(RuntimeError):
    """Something needs confluent-kafka and it is not installed; the message names the extra."""


def require_kafka_client(what: str) -> None:
    """Raise KafkaClientMissing, naming ``what`` needs it, unless confluent_kafka can be imported."""
    try:
        __import__("confluent_kafka")
    except ImportError:
        raise KafkaClientMissing(f"{what} needs the Kafka client: {INSTALL_HINT}") from None


def kafka_errors() -> tuple[type[BaseException], ...]:
    """confluent_kafka's KafkaException once the client is loaded, else nothing: an ``except`` clause
    catches the Kafka client's refusals this way without importing the client for applications that do
    not use Kafka (and so could not have raised one)."""
    module = sys.modules.get("confluent_kafka")
    return () if module is None else (module.KafkaException,)
