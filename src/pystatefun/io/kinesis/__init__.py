"""Amazon Kinesis ingress and egress (spec §3.5): ``client`` makes the botocore client from the module's
keys, ``ingress`` reads shards into the runtime with positions that commit with the epochs, ``egress``
puts committed records with PutRecords. The Kafka backend's side is in backends/kafka/kinesis.py."""

from pystatefun.io.kinesis.egress import KinesisEgress
from pystatefun.io.kinesis.ingress import KinesisIngress

__all__ = ["KinesisEgress", "KinesisIngress"]
