"""What a module file describes, as typed, immutable values: the result of ``load_module``.

Every class here is a frozen dataclass holding validated values with the defaults already applied, so
code that runs a module never re-checks or re-defaults anything. Key names follow Python style
(``url_path_template`` for ``urlPathTemplate``); docs/configuration.md maps each YAML key to its field.
``origin`` says where a component was written (``document 2 (io.statefun.endpoints.v2/http)``), for
messages about it.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

# -- kinds ---------------------------------------------------------------------------------------------

KIND_HTTP_V1 = "io.statefun.endpoints.v1/http"
KIND_HTTP_V2 = "io.statefun.endpoints.v2/http"
KIND_EMBEDDED = "pystatefun.v1/embedded"
KIND_KAFKA_INGRESS = "io.statefun.kafka.v1/ingress"
KIND_KAFKA_EGRESS = "io.statefun.kafka.v1/egress"
KIND_KINESIS_INGRESS = "io.statefun.kinesis.v1/ingress"
KIND_KINESIS_EGRESS = "io.statefun.kinesis.v1/egress"
KIND_PLAYGROUND_INGRESS = "io.statefun.playground.v1/ingress"
KIND_PLAYGROUND_EGRESS = "io.statefun.playground.v1/egress"

TRANSPORT_ASYNC = "io.statefun.transports.v1/async"
TRANSPORT_OKHTTP = "io.statefun.transports.v1/okhttp"

PLAYGROUND_INGRESS_ID = "io.statefun.playground/ingress"
PLAYGROUND_EGRESS_ID = "io.statefun.playground/egress"

FUNCTION_NAME_PLACEHOLDER = "{function.name}"

# -- limits --------------------------------------------------------------------------------------------
# Every number a module file gives has a range (docs/configuration.md lists them). A value beyond it is an
# error, never "so large that the limit is off": an unbounded batch, pool or payload is memory the runtime
# promised to bound, and a timeout of centuries is no timeout.

MAX_TIMEOUT = timedelta(days=1)  # call, connect, read, write, pool_ttl, backoffs, Kafka transactions
MAX_IDEMPOTENCY_KEY_TTL = timedelta(days=365)
MAX_BATCH_REQUESTS = 100_000  # maxNumBatchRequests
MIN_BATCH_REQUESTS = -(2**31)  # <= 0 is "no per-address limit" in StateFun, which reads a Java int
MAX_POOL_SIZE = 65_536  # connections per endpoint: no more local ports than that to one address
MAX_PAYLOAD_BYTES = 2**30  # 1 GiB: a response is held in memory whole, and protobuf stops at 2 GiB
MAX_RETRY_ATTEMPTS = 10_000
MAX_KAFKA_OFFSET = 2**63 - 1  # Kafka offsets are signed 64-bit
MAX_OUTSTANDING_RECORDS = 100_000  # Kinesis egress records in flight


# -- function bindings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionSelector:
    """The function types a binding serves: one type (``ns/name``) or a whole namespace (``ns/*``,
    ``name`` is ``None``)."""

    namespace: str
    name: str | None

    @classmethod
    def parse(cls, text: str) -> FunctionSelector:
        """Reads ``ns/name`` or ``ns/*``; a ``*`` anywhere else is a ``ValueError``, as in StateFun."""
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise ValueError(f"{text!r} is not a function type pattern: write '<namespace>/<name>' or '<namespace>/*'")
        if "*" in namespace or ("*" in name and name != "*"):
            raise ValueError(f"{text!r}: '*' may only stand for the whole name, as in '{namespace.replace('*', '') or 'example'}/*'")
        return cls(namespace, None if name == "*" else name)

    @property
    def is_namespace(self) -> bool:
        """Whether this selects a whole namespace (``ns/*``)."""
        return self.name is None

    def matches(self, typename: str) -> bool:
        """Whether the function type ``ns/name`` is selected."""
        namespace, _, name = typename.rpartition("/")
        return namespace == self.namespace and (self.name is None or name == self.name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name or '*'}"


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How pystatefun retries a failed call to a remote function (a pystatefun extension, key ``retry``).

    Connection errors and ``retryable_status`` responses are retried with exponential backoff from
    ``initial_backoff`` up to ``max_backoff``, within the transport's ``call`` budget, at most
    ``max_attempts`` attempts in all (``None``: until the budget is spent); a call whose function raised
    (answered HTTP 500) ``function_error_max_attempts`` times fails then (``None``: it does not; see
    runtime/retry.py for why 3 is the default).
    """

    max_attempts: int | None = None
    function_error_max_attempts: int | None = 3
    initial_backoff: timedelta = timedelta(milliseconds=10)
    max_backoff: timedelta = timedelta(seconds=5)
    retryable_status: tuple[int, ...] = (408, 429, *range(500, 600))


@dataclass(frozen=True, kw_only=True)
class TransportSpec:
    """The HTTP client settings of an endpoint (spec §2.7), with the defaults of its transport type.

    ``type`` is ``"async"`` (``io.statefun.transports.v1/async``, the v2 default) or ``"okhttp"``
    (``io.statefun.transports.v1/okhttp``, and always for ``io.statefun.endpoints.v1/http``).
    async: call 2 min, connect 20 s, no read/write timeouts (each attempt may use the rest of the call
    budget), pool_ttl 15 s, pool_size 1024, payload_max_bytes 32 MiB; TLS files resolved to paths.
    okhttp: call 1 min, connect/read/write 10 s; the pool settings are OkHttp's fixed ones (1024
    connections kept 1 min) and payload_max_bytes pystatefun's 32 MiB bound.
    """

    type: typing.Literal["async", "okhttp"]
    call: timedelta
    connect: timedelta
    read: timedelta | None = None
    write: timedelta | None = None
    pool_ttl: timedelta = timedelta(seconds=15)
    pool_size: int = 1024
    payload_max_bytes: int = 32 * 1024 * 1024
    trust_cacerts: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    client_key_password: Path | None = None

    @property
    def typename(self) -> str:
        """The transport's StateFun typename."""
        return TRANSPORT_ASYNC if self.type == "async" else TRANSPORT_OKHTTP

    @classmethod
    def async_defaults(cls) -> TransportSpec:
        """The settings of a v2 endpoint without a ``transport`` block."""
        return cls(type="async", call=timedelta(minutes=2), connect=timedelta(seconds=20))

    @classmethod
    def okhttp_defaults(cls) -> TransportSpec:
        """The settings of an okhttp transport (or a v1 endpoint) without timeouts."""
        ten = timedelta(seconds=10)
        return cls(type="okhttp", call=timedelta(minutes=1), connect=ten, read=ten, write=ten, pool_ttl=timedelta(minutes=1))


@dataclass(frozen=True, kw_only=True)
class HttpEndpoint:
    """Remote functions served over HTTP (``io.statefun.endpoints.v2/http`` or ``.v1/http``).

    ``url_path_template`` is an ``http``, ``https``, ``http+unix`` or ``https+unix`` URL in which
    ``{function.name}`` stands for the function's name; for the ``+unix`` schemes the path names the
    socket file (a segment ending in ``.sock``) followed by the HTTP path.
    ``max_num_batch_requests`` <= 0 means no per-address limit, as in StateFun.
    """

    kind: str = KIND_HTTP_V2
    functions: FunctionSelector
    url_path_template: str
    max_num_batch_requests: int = 1000
    transport: TransportSpec = field(default_factory=TransportSpec.async_defaults)
    retry: RetryPolicy | None = None
    origin: str = field(default="", compare=False)

    def url_for(self, function_name: str) -> str:
        """The URL that serves the function named ``function_name`` (the part after the namespace)."""
        return self.url_path_template.replace(FUNCTION_NAME_PLACEHOLDER, function_name)


@dataclass(frozen=True, kw_only=True)
class EmbeddedFunctions:
    """Functions run inside the pystatefun process (``pystatefun.v1/embedded``, a pystatefun kind).

    ``module`` names a ``StatefulFunctions`` object as ``package.module:attribute``, imported with
    ``base_dir`` (the module file's folder) first on ``sys.path``.
    """

    kind: str = KIND_EMBEDDED
    functions: FunctionSelector
    module: str
    base_dir: Path
    origin: str = field(default="", compare=False)


FunctionBinding = HttpEndpoint | EmbeddedFunctions


# -- playground ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PlaygroundIngress:
    """The playground HTTP ingress (``io.statefun.playground.v1/ingress``): ``PUT /ns/type/id`` sends a
    message. ``host`` and ``idempotency_key_ttl`` are pystatefun extensions (StateFun listens on all
    interfaces and has no idempotency keys)."""

    kind: str = KIND_PLAYGROUND_INGRESS
    port: int
    host: str = "127.0.0.1"
    idempotency_key_ttl: timedelta = timedelta(hours=24)
    origin: str = field(default="", compare=False)

    @property
    def id(self) -> str:
        """Always ``io.statefun.playground/ingress``."""
        return PLAYGROUND_INGRESS_ID


@dataclass(frozen=True, kw_only=True)
class PlaygroundEgress:
    """The playground HTTP egress (``io.statefun.playground.v1/egress``): ``GET /topic`` takes a record.
    ``host`` is a pystatefun extension."""

    kind: str = KIND_PLAYGROUND_EGRESS
    port: int
    topics: tuple[str, ...]
    host: str = "127.0.0.1"
    origin: str = field(default="", compare=False)

    @property
    def id(self) -> str:
        """Always ``io.statefun.playground/egress``."""
        return PLAYGROUND_EGRESS_ID


# -- Kafka and Kinesis ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Routing:
    """Where the records of one Kafka topic or Kinesis stream go (spec §3.3): each record becomes a
    message of type ``value_type``, sent to every function type in ``targets`` at the id = record key."""

    source: str
    value_type: str
    targets: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class KafkaStartupPosition:
    """Where a Kafka ingress starts reading without a checkpoint. ``offsets`` maps ``(topic, partition)``
    to an offset (type ``specific-offsets``); ``date`` is set for type ``date``."""

    type: typing.Literal["group-offsets", "earliest", "latest", "specific-offsets", "date"] = "latest"
    offsets: typing.Mapping[tuple[str, int], int] | None = None
    date: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class KafkaBadRecords:
    """``badRecords`` of a Kafka ingress (ours; StateFun fails the job): what happens to a record that
    cannot become a message (no key, a key that is not UTF-8, a topic with no routing). ``fail`` stops
    reading its partition at that record (reported in logs, metrics and /health; nothing is skipped),
    ``skip`` counts and skips it, ``dead-letter-topic`` copies it to ``topic`` with the reason in headers."""

    type: typing.Literal["fail", "skip", "dead-letter-topic"] = "fail"
    topic: str | None = None


@dataclass(frozen=True, kw_only=True)
class KafkaIngress:
    """``io.statefun.kafka.v1/ingress``. ``address`` and ``consumer_group_id`` are the effective bootstrap
    servers and group id (the named keys win over ``bootstrap.servers`` / ``group.id`` properties)."""

    kind: str = KIND_KAFKA_INGRESS
    id: str
    address: str
    consumer_group_id: str
    topics: tuple[Routing, ...]
    auto_offset_reset_position: typing.Literal["earliest", "latest"] = "latest"
    startup_position: KafkaStartupPosition = KafkaStartupPosition()
    bad_records: KafkaBadRecords = KafkaBadRecords()
    properties: typing.Mapping[str, str] = field(default_factory=dict)
    origin: str = field(default="", compare=False)


@dataclass(frozen=True, kw_only=True)
class KafkaDeliverySemantic:
    """``deliverySemantic`` of a Kafka egress; ``transaction_timeout`` is set for ``exactly-once``."""

    type: typing.Literal["at-least-once", "exactly-once", "none"] = "at-least-once"
    transaction_timeout: timedelta | None = None


@dataclass(frozen=True, kw_only=True)
class KafkaEgress:
    """``io.statefun.kafka.v1/egress``; ``address`` is the effective bootstrap servers."""

    kind: str = KIND_KAFKA_EGRESS
    id: str
    address: str
    delivery_semantic: KafkaDeliverySemantic = KafkaDeliverySemantic()
    properties: typing.Mapping[str, str] = field(default_factory=dict)
    origin: str = field(default="", compare=False)


@dataclass(frozen=True, kw_only=True)
class AwsRegion:
    """``awsRegion``: ``default`` (the AWS provider chain), ``specific`` (``id``) or ``custom-endpoint``
    (``endpoint`` and the region ``id`` to sign for)."""

    type: typing.Literal["default", "specific", "custom-endpoint"] = "default"
    id: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True, kw_only=True)
class AwsCredentials:
    """``awsCredentials``: ``default`` (the AWS provider chain), ``basic`` (key id and secret) or
    ``profile`` (``profile_name``, optional ``profile_path``, resolved against the module file's folder)."""

    type: typing.Literal["default", "basic", "profile"] = "default"
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    profile_name: str | None = None
    profile_path: Path | None = None


@dataclass(frozen=True, kw_only=True)
class KinesisStartupPosition:
    """Where a Kinesis ingress starts reading: ``latest``, ``earliest`` or ``date`` (with ``date``)."""

    type: typing.Literal["latest", "earliest", "date"] = "latest"
    date: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class KinesisBadRecords:
    """``badRecords`` of a Kinesis ingress (ours, as for Kafka): what happens to a record that cannot become
    a message (a partition key that cannot be an address id). ``fail`` stops reading its shard at that
    record, ``skip`` counts and skips it, ``dead-letter-stream`` puts it on ``stream`` (same partition key)."""

    type: typing.Literal["fail", "skip", "dead-letter-stream"] = "fail"
    stream: str | None = None


@dataclass(frozen=True, kw_only=True)
class KinesisIngress:
    """``io.statefun.kinesis.v1/ingress``; ``client_config_properties`` go to the Kinesis client (docs/kinesis.md
    lists the names it takes)."""

    kind: str = KIND_KINESIS_INGRESS
    id: str
    streams: tuple[Routing, ...]
    aws_region: AwsRegion = AwsRegion()
    aws_credentials: AwsCredentials = AwsCredentials()
    startup_position: KinesisStartupPosition = KinesisStartupPosition()
    bad_records: KinesisBadRecords = KinesisBadRecords()
    client_config_properties: typing.Mapping[str, str] = field(default_factory=dict)
    origin: str = field(default="", compare=False)


@dataclass(frozen=True, kw_only=True)
class KinesisEgress:
    """``io.statefun.kinesis.v1/egress``; ``client_config_properties`` go to the Kinesis producer."""

    kind: str = KIND_KINESIS_EGRESS
    id: str
    aws_region: AwsRegion = AwsRegion()
    aws_credentials: AwsCredentials = AwsCredentials()
    max_outstanding_records: int = 1000
    # ours: each record's data starts with "pystatefun-id:<id>\n", an id that is the same when a record is
    # put again after a crash, for readers that drop duplicates (docs/kinesis.md)
    record_ids: bool = False
    client_config_properties: typing.Mapping[str, str] = field(default_factory=dict)
    origin: str = field(default="", compare=False)


Ingress = PlaygroundIngress | KafkaIngress | KinesisIngress
Egress = PlaygroundEgress | KafkaEgress | KinesisEgress
Component = FunctionBinding | Ingress | Egress


# -- the module ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Module:
    """A loaded module file: its function bindings, ingresses and egresses, in file order.

    Loading guarantees that no function type or namespace is bound twice and that ingress and egress
    ids are unique.
    """

    path: Path
    endpoints: tuple[HttpEndpoint, ...] = ()
    embedded: tuple[EmbeddedFunctions, ...] = ()
    ingresses: tuple[Ingress, ...] = ()
    egresses: tuple[Egress, ...] = ()

    @property
    def base_dir(self) -> Path:
        """The folder of the module file, against which its relative paths are resolved."""
        return self.path.parent

    @property
    def bindings(self) -> tuple[FunctionBinding, ...]:
        """All function bindings: embedded ones, then endpoints."""
        return (*self.embedded, *self.endpoints)

    def binding_for(self, typename: str) -> FunctionBinding | None:
        """The binding that serves the function type ``ns/name``: one for exactly that type wins over
        one for its namespace (StateFun's rule); ``None`` if nothing binds it."""
        namespace_binding = None
        for binding in self.bindings:
            if binding.functions.matches(typename):
                if not binding.functions.is_namespace:
                    return binding
                namespace_binding = namespace_binding or binding
        return namespace_binding

    def ingress(self, ingress_id: str) -> Ingress | None:
        """The ingress with id ``ingress_id``, if any."""
        return next((i for i in self.ingresses if i.id == ingress_id), None)

    def egress(self, egress_id: str) -> Egress | None:
        """The egress with id ``egress_id``, if any."""
        return next((e for e in self.egresses if e.id == egress_id), None)
