"""Prometheus metrics of a running application (``GET /metrics`` on the admin API).

StateFun's per-function-type set (spec §5.5) under ``pystatefun_function_*`` -- messages in, out to
local/remote functions and to egresses, in-flight batches, backlog, blocked addresses, remote call
latency and failures; the first MAX_FUNCTION_TYPE_LABELS function types by name, any after them
summed under ``function_type="other"`` -- plus the epoch commits, the ingress answers, egress depth, parked addresses and
dead letters. Counters the hot path keeps as plain ints are read when scraped; only the latency
histograms are fed as things happen (once per remote call and once per commit).
"""

from __future__ import annotations

import typing

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pystatefun.runtime.cardinality import MAX_FUNCTION_TYPE_LABELS, FunctionTypeLabels
from pystatefun.runtime.health import EndpointHealth
from pystatefun.runtime.processor import Runtime

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
SIZE_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


class CountsStore(typing.Protocol):
    def counts(self) -> dict[str, typing.Any]: ...


class Metrics:
    """The application's metrics, on a registry of its own (several applications can share a process)."""

    def __init__(self, runtime: Runtime, store: CountsStore, ingress_responses: typing.Mapping[int, int],
                 max_function_types: int = MAX_FUNCTION_TYPE_LABELS):
        self.registry = CollectorRegistry()
        self.label_of = FunctionTypeLabels(max_function_types)
        self.remote_latency = Histogram(
            "pystatefun_function_remote_invocation_latency_seconds",
            "Time of each call to a remote function, retries included, by function type",
            ["function_type"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.commit_latency = Histogram(
            "pystatefun_epoch_commit_latency_seconds", "Time of each epoch commit",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.commit_size = Histogram(
            "pystatefun_epoch_commit_records", "Records written by each epoch commit",
            buckets=SIZE_BUCKETS, registry=self.registry,
        )
        self._failures: dict[str, int] = {}  # by label value
        # each label value's histogram: labels() takes a lock and builds a key on every call
        self._remote_latency_of: dict[str, typing.Any] = {}
        self.registry.register(_RuntimeCollector(runtime, store, ingress_responses, self._failures, self.label_of))
        runtime.on_commit = self._committed

    def remote_call(self, function_type: str, seconds: float, ok: bool) -> None:
        """The RemoteInvoker hook."""
        label = self.label_of(function_type)
        histogram = self._remote_latency_of.get(label)
        if histogram is None:
            histogram = self._remote_latency_of[label] = self.remote_latency.labels(label)
        histogram.observe(seconds)
        if not ok:
            self._failures[label] = self._failures.get(label, 0) + 1

    def _committed(self, seconds: float, records: int) -> None:
        self.commit_latency.observe(seconds)
        self.commit_size.observe(records)


class _RuntimeCollector(Collector):
    def __init__(self, runtime: Runtime, store: CountsStore, ingress_responses: typing.Mapping[int, int],
                 failures: dict[str, int], label_of: FunctionTypeLabels):
        self.runtime = runtime
        self.store = store
        self.ingress_responses = ingress_responses
        self.failures = failures
        self.label_of = label_of

    def collect(self) -> typing.Iterable[typing.Any]:
        runtime = self.runtime
        label_of = self.label_of
        by_type = ["function_type"]
        labels = dict.fromkeys(label_of(function_type) for function_type in runtime.stats)  # in a stable order
        counters = {
            "messages_in": ("pystatefun_function_in", "Messages delivered to functions"),
            "out_local": ("pystatefun_function_out_local", "Messages sent to functions on this process's partitions"),
            "out_remote": ("pystatefun_function_out_remote", "Messages sent to functions on partitions owned elsewhere"),
            "out_egress": ("pystatefun_function_out_egress", "Records sent to egresses"),
            "batches": ("pystatefun_function_batches", "Function calls (batches of messages)"),
        }
        for attribute, (name, help_text) in counters.items():
            totals: dict[str, int] = {}
            for function_type, stats in runtime.stats.items():
                label = label_of(function_type)
                totals[label] = totals.get(label, 0) + getattr(stats, attribute)
            family = CounterMetricFamily(name, help_text, labels=by_type)
            for label, total in totals.items():
                family.add_metric([label], total)
            yield family
        failures = CounterMetricFamily(
            "pystatefun_function_remote_invocation_failures", "Remote calls that failed after their retries", labels=by_type
        )
        for function_type, count in self.failures.items():
            failures.add_metric([function_type], count)
        yield failures

        in_flight: dict[str, int] = {}
        backlog: dict[str, int] = {}
        blocked: dict[str, int] = {}
        parked: dict[str, int] = {}
        for processor in runtime.processors.values():
            for mailbox in processor.mailboxes.values():
                function_type = label_of(mailbox.key[0])
                waiting = len(mailbox.backlog) + mailbox.spilled + len(mailbox.overflow)
                backlog[function_type] = backlog.get(function_type, 0) + waiting
                if mailbox.in_flight is not None:
                    in_flight[function_type] = in_flight.get(function_type, 0) + 1
                    if waiting:  # messages wait behind the batch in flight (StateFun: a blocked address)
                        blocked[function_type] = blocked.get(function_type, 0) + 1
                if mailbox.parked is not None:
                    parked[function_type] = parked.get(function_type, 0) + 1
        gauges = (
            ("pystatefun_function_inflight_batches", "Batches being run", in_flight),
            ("pystatefun_function_backlog", "Messages waiting behind a batch in flight or a parked address", backlog),
            ("pystatefun_function_blocked_addresses", "Addresses with messages waiting behind a batch in flight", blocked),
            ("pystatefun_function_parked_addresses", "Addresses parked after a failure", parked),
        )
        for name, help_text, values in gauges:
            family = GaugeMetricFamily(name, help_text, labels=by_type)
            for label in labels:
                family.add_metric([label], values.get(label, 0))
            yield family

        counts = self.store.counts()
        if counts["dead_letters"] is not None:  # not on the Kafka backend (see KafkaStore.counts)
            yield GaugeMetricFamily("pystatefun_dead_letters", "Dead letters kept", value=counts["dead_letters"])
        yield GaugeMetricFamily("pystatefun_inbox_messages", "Committed messages not processed yet", value=counts["inbox"])
        egress = GaugeMetricFamily("pystatefun_egress_records", "Egress records waiting to be read", labels=["egress", "topic"])
        for (egress_id, topic), count in counts["egress"].items():
            egress.add_metric([egress_id, topic], count)
        yield egress
        yield CounterMetricFamily("pystatefun_epochs_committed", "Epochs committed", value=runtime.commits)
        ingress = CounterMetricFamily("pystatefun_ingress_responses", "HTTP ingress answers by status", labels=["status"])
        for status, count in sorted(self.ingress_responses.items()):
            ingress.add_metric([str(status)], count)
        yield ingress


class EndpointCollector(Collector):
    """The health of each remote endpoint: one label value per endpoint of the module (its
    urlPathTemplate), so the series are as many as the module's endpoints, never per function type."""

    def __init__(self, endpoints: typing.Sequence[EndpointHealth]):
        self.endpoints = endpoints

    def collect(self) -> typing.Iterable[typing.Any]:
        failing = GaugeMetricFamily("pystatefun_endpoint_failing",
                                    "1 while the last attempt to call the endpoint failed, else 0", labels=["endpoint"])
        failed = CounterMetricFamily("pystatefun_endpoint_failed_attempts",
                                     "Attempts to call the endpoint that failed, retries included", labels=["endpoint"])
        for health in self.endpoints:
            failing.add_metric([health.endpoint], 0 if health.failing_since is None else 1)
            failed.add_metric([health.endpoint], health.failed_attempts)
        yield failing
        yield failed


class KafkaCollector(Collector):
    """Counters of the Kafka ingresses and egresses (io/kafka.py), read when scraped."""

    def __init__(self, ingresses: typing.Sequence[typing.Any], egresses: typing.Sequence[typing.Any]):
        self.ingresses = ingresses
        self.egresses = egresses

    def collect(self) -> typing.Iterable[typing.Any]:
        records = CounterMetricFamily("pystatefun_kafka_ingress_records", "Kafka records turned into messages", labels=["ingress"])
        bad = CounterMetricFamily("pystatefun_kafka_ingress_bad_records",
                                  "Kafka records that could not become messages, by what was done with them",
                                  labels=["ingress", "action"])
        elsewhere = CounterMetricFamily(
            "pystatefun_kafka_ingress_messages_elsewhere",
            "Messages of Kafka records for addresses of another partition than the record's: they go through "
            "<app>.messages, one more transaction (a topic not partitioned like the application; see docs/kafka.md)",
            labels=["ingress"])
        stopped = GaugeMetricFamily("pystatefun_kafka_ingress_stopped_partitions",
                                    "Partitions stopped at a bad record (badRecords: fail)", labels=["ingress"])
        for ingress in self.ingresses:
            records.add_metric([ingress.spec.id], ingress.records)
            elsewhere.add_metric([ingress.spec.id], ingress.elsewhere)
            for action, count in sorted(ingress.bad_records.items()):
                bad.add_metric([ingress.spec.id, action], count)
            stopped.add_metric([ingress.spec.id], len(ingress.stopped))
        forwarded = CounterMetricFamily("pystatefun_kafka_egress_forwarded", "Egress records delivered to Kafka", labels=["egress"])
        for egress in self.egresses:
            forwarded.add_metric([egress.id], egress.forwarded)
        yield from (records, elsewhere, bad, stopped, forwarded)


class KinesisCollector(Collector):
    """Counters of the Kinesis ingresses and egresses (io/kinesis), read when scraped."""

    def __init__(self, ingresses: typing.Sequence[typing.Any], egresses: typing.Sequence[typing.Any]):
        self.ingresses = ingresses
        self.egresses = egresses

    def collect(self) -> typing.Iterable[typing.Any]:
        records = CounterMetricFamily("pystatefun_kinesis_ingress_records", "Kinesis records turned into messages",
                                      labels=["ingress"])
        bad = CounterMetricFamily("pystatefun_kinesis_ingress_bad_records",
                                  "Kinesis records that could not become messages, by what was done with them",
                                  labels=["ingress", "action"])
        throttles = CounterMetricFamily("pystatefun_kinesis_ingress_throttles",
                                        "Kinesis calls refused for throughput (asked again after a backoff)", labels=["ingress"])
        retries = CounterMetricFamily("pystatefun_kinesis_ingress_retries",
                                      "Other failed Kinesis calls asked again: unreachable, expired iterator, no such stream",
                                      labels=["ingress"])
        behind = GaugeMetricFamily("pystatefun_kinesis_ingress_millis_behind_latest",
                                   "How far the last read of a shard was behind its tip (MillisBehindLatest)",
                                   labels=["ingress", "stream", "shard"])
        stopped = GaugeMetricFamily("pystatefun_kinesis_ingress_stopped_shards",
                                    "Shards stopped at a bad record (badRecords: fail)", labels=["ingress"])
        for ingress in self.ingresses:
            records.add_metric([ingress.spec.id], ingress.records)
            for action, count in sorted(ingress.bad_records.items()):
                bad.add_metric([ingress.spec.id, action], count)
            throttles.add_metric([ingress.spec.id], ingress.throttles)
            retries.add_metric([ingress.spec.id], ingress.retries)
            for (stream, shard), ms in sorted(ingress.behind.items()):
                behind.add_metric([ingress.spec.id, stream, shard], ms)
            stopped.add_metric([ingress.spec.id], len(ingress.stopped))
        put = CounterMetricFamily("pystatefun_kinesis_egress_records", "Egress records Kinesis took", labels=["egress"])
        egress_throttles = CounterMetricFamily("pystatefun_kinesis_egress_throttles",
                                               "PutRecords calls or entries refused for throughput, put again", labels=["egress"])
        egress_retries = CounterMetricFamily("pystatefun_kinesis_egress_retries",
                                             "Other failed PutRecords calls or entries, put again", labels=["egress"])
        for egress in self.egresses:
            putter = egress.putter
            put.add_metric([egress.id], putter.put)
            egress_throttles.add_metric([egress.id], putter.throttles)
            egress_retries.add_metric([egress.id], putter.retries)
        yield from (records, bad, throttles, retries, behind, stopped, put, egress_throttles, egress_retries)


class KafkaBackendCollector(Collector):
    """The Kafka backend worker's partitions (backends/kafka/worker.py), read when scraped."""

    def __init__(self, backend: typing.Any):
        self.backend = backend

    def collect(self) -> typing.Iterable[typing.Any]:
        backend = self.backend
        yield CounterMetricFamily("pystatefun_kafka_rebalances", "Partition assignments and revocations seen",
                                  value=backend.rebalances)
        yield GaugeMetricFamily("pystatefun_kafka_owned_partitions", "Partitions of <app>.messages this worker runs",
                                value=len(backend.runtime.processors) if backend.runtime else 0)
        restoring = GaugeMetricFamily("pystatefun_kafka_restore_remaining_records",
                                      "Changelog records still to read before a partition runs", labels=["partition"])
        for partition, remaining in sorted(backend.restoring.items()):
            restoring.add_metric([str(partition)], remaining)
        lag = GaugeMetricFamily("pystatefun_kafka_partition_lag", "Messages in the log after the read position",
                                labels=["partition"])
        for partition, behind in sorted(backend.lag().items()):
            lag.add_metric([str(partition)], behind)
        yield from (restoring, lag)
