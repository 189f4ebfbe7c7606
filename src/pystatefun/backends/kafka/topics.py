"""The topics of an application on the Kafka backend, created when missing and checked when present."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic


class TopicMismatchError(RuntimeError):
    """An existing topic does not fit the application (partition count, cleanup policy)."""


@dataclass(frozen=True)
class Topics:
    app: str
    partitions: int

    @property
    def messages(self) -> str:
        return f"{self.app}.messages"

    @property
    def state(self) -> str:
        return f"{self.app}.state"

    @property
    def dead_letters(self) -> str:
        return f"{self.app}.dead-letters"

    @property
    def kinesis_egress(self) -> str:
        """Kinesis egress records, committed and not forwarded yet (backends/kafka/kinesis.py)."""
        return f"{self.app}.kinesis-egress"


def prepare_topics(admin: AdminClient, app: str, partitions: int | None, replication: int | None = None,
                   timeout: float = 30.0) -> Topics:
    """The application's topics, created if missing. ``partitions`` None: take the existing count (8 for
    a new application). An existing topic with another partition count is refused: addresses map to
    partitions by hash, so the count is fixed for the life of an application."""
    existing = admin.list_topics(timeout=timeout).topics
    names = (f"{app}.messages", f"{app}.state", f"{app}.kinesis-egress")
    counts = {name: len(existing[name].partitions) for name in names if name in existing}
    if partitions is None:
        partitions = next(iter(counts.values()), 8)
    for name, count in counts.items():
        if count != partitions:
            raise TopicMismatchError(
                f"topic {name} has {count} partitions, but the application runs {partitions}: addresses map to "
                f"partitions by hash, so the count is fixed for an application. Run with --partitions {count}, "
                f"or move it to a new --app name with another count through a savepoint (docs/savepoints.md)."
            )
    if f"{app}.state" in existing:
        _check_compacted(admin, f"{app}.state", timeout)
    replicas = {"replication_factor": replication or replication_for(admin, timeout)}
    wanted = [
        NewTopic(f"{app}.messages", partitions, **replicas),
        NewTopic(f"{app}.state", partitions, config={"cleanup.policy": "compact"}, **replicas),
        NewTopic(f"{app}.dead-letters", 1, **replicas),
        NewTopic(f"{app}.kinesis-egress", partitions, **replicas),
    ]
    missing = [topic for topic in wanted if topic.topic not in existing]
    if missing:
        for name, future in admin.create_topics(missing, operation_timeout=timeout).items():
            try:
                future.result(timeout)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another worker made it first
                    raise
        return prepare_topics(admin, app, partitions, replication, timeout)  # check what another worker made
    return Topics(app, partitions)


def _check_compacted(admin: AdminClient, topic: str, timeout: float) -> None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    config = admin.describe_configs([resource])[resource].result(timeout)
    policy = config["cleanup.policy"].value
    if "compact" not in policy:
        raise TopicMismatchError(
            f"topic {topic} has cleanup.policy={policy}; the changelog must be compacted (cleanup.policy=compact), "
            "or state would be lost when old segments are deleted"
        )


def replication_for(admin: AdminClient, timeout: float = 30.0) -> int:
    """Three replicas where the cluster has three brokers, else as many as it has."""
    brokers = len(admin.list_topics(timeout=timeout).brokers)
    return min(3, max(1, brokers))

