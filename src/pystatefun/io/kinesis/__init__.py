"""Amazon Kinesis ingress and egress (spec §3.5): ``client`` makes the botocore client from the module's
keys, ``ingress`` reads shards into the runtime with positions that commit with the epochs, ``egress``
puts committed records with PutRecords. The Kafka backend's side is in backends/kafka/kinesis.py.

botocore is an extra (``pip install 'pystatefun[kinesis]'``): this package's own module only checks that
it is there, so that applications without Kinesis never load it."""

from __future__ import annotations

INSTALL_HINT = "pip install 'pystatefun[kinesis]'"


class AwsClientMissing(RuntimeError):
    """A Kinesis ingress or egress, and botocore is not installed; the message names the extra."""


def require_aws_client(what: str) -> None:
    """Raise AwsClientMissing, naming ``what`` needs it, unless botocore can be imported."""
    try:
        __import__("botocore")
    except ImportError:
        raise AwsClientMissing(f"{what} needs the AWS client, botocore: {INSTALL_HINT}") from None
