"""An application on the embedded backend: a module.yaml's functions, ingresses and egresses, wired to
one Runtime over one SQLite data dir. ``pystatefun run module.yaml`` runs one of these."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
import types
import typing
from pathlib import Path

from aiohttp import web

from pystatefun.admin import AdminApi
from pystatefun.admin.metrics import EndpointCollector, KafkaBackendCollector, KafkaCollector, KinesisCollector, Metrics
from pystatefun.admin.observation import Deployment
from pystatefun.admin.server import serve as serve_admin
from pystatefun.backends.embedded import SQLiteStore
from pystatefun.backends.kafka.client import require_kafka_client
from pystatefun.config import (
    EmbeddedFunctions,
    HttpEndpoint,
    KafkaEgress as KafkaEgressSpec,
    KafkaIngress as KafkaIngressSpec,
    KinesisEgress as KinesisEgressSpec,
    KinesisIngress as KinesisIngressSpec,
    Module,
    PlaygroundEgress as PlaygroundEgressSpec,
    PlaygroundIngress as PlaygroundIngressSpec,
)
from pystatefun.event_loop import stop_signal
from pystatefun.io.http_server import HttpServer, PortUnavailable
from pystatefun.io.kinesis import require_aws_client
from pystatefun.io.playground import EGRESS_ID, INGRESS_ID, PlaygroundEgress, PlaygroundIngress, answered_by_owner
from pystatefun.loading import load_object
from pystatefun.runtime.health import EndpointHealth
from pystatefun.runtime.invokers import EmbeddedInvoker, RemoteInvoker
from pystatefun.runtime.processor import Runtime
from pystatefun.runtime.timers import TimerService
from pystatefun.savepoints import embedded as embedded_savepoints
from pystatefun.savepoints import storage as savepoint_storage
from pystatefun.savepoints.format import SavepointError
from pystatefun.sdk.functions import StatefulFunctions
from pystatefun.wording import plural

if typing.TYPE_CHECKING:
    from pystatefun.backends.kafka.worker import KafkaBackend
    from pystatefun.tracing import Tracing

log = logging.getLogger("pystatefun")

DEFAULT_PARTITIONS = 8


def _kafka_io(module: Module) -> types.ModuleType:
    """io/kafka.py, imported only for a module with a Kafka ingress or egress: confluent-kafka is an extra."""
    require_kafka_client(f"{module.path}: a Kafka ingress or egress")
    from pystatefun.io import kafka

    return kafka


def _kinesis_io(module: Module) -> tuple[type, type]:
    """io/kinesis's ingress and egress, imported only for a module with a Kinesis ingress or egress:
    botocore is an extra."""
    require_aws_client(f"{module.path}: a Kinesis ingress or egress")
    from pystatefun.io.kinesis.egress import KinesisEgress
    from pystatefun.io.kinesis.ingress import KinesisIngress

    return KinesisIngress, KinesisEgress


# each listener: what it is, and where its port is set
_INGRESS = ("playground ingress", "change its port in module.yaml (INGRESS_PORT in the examples)")
_EGRESS = ("playground egress", "change its port in module.yaml (EGRESS_PORT in the examples)")
_ADMIN = ("admin API", "change it with --admin-port (0 turns the admin API off)")


class UnsupportedComponentError(RuntimeError):
    """A module component that is valid but that this runtime cannot run yet."""


class RuntimeFailure(RuntimeError):
    """The runtime could not go on (a commit failed): the process exits, and a restart recovers."""


class Application:
    """Everything one ``pystatefun run`` process serves."""

    def __init__(
        self,
        module: Module,
        data_dir: Path | str | None,
        *,
        partitions: int = DEFAULT_PARTITIONS,
        commit_interval: float = 0.1,
        admin_port: int | None = None,
        admin_host: str = "127.0.0.1",
        admin_token: str | None = None,
        kafka: KafkaBackend | None = None,
        port_offset: int = 0,
        tracing: Tracing | None = None,
    ):
        """``data_dir``: the embedded backend's SQLite data dir; ``kafka``: a worker of the Kafka
        backend instead (then ``data_dir`` and ``partitions`` are not used); ``tracing``: OpenTelemetry
        spans (tracing/config.py from_environment), None for none."""
        self.module = module
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.admin_port = admin_port
        self.admin_host = admin_host
        self.admin_token = admin_token
        self.kafka = kafka
        self.port_offset = port_offset  # added to the playground ports (worker i of --workers N)
        self._check_supported(module, kafka)
        self.store: typing.Any = kafka.store if kafka is not None else SQLiteStore(data_dir, partitions)
        self._invokers: dict[str, typing.Any] = {}
        self._transports: list[typing.Any] = []  # HttpTransport
        registered = self.store.function_specs()
        # one invoker per binding (document) of the module
        self._by_binding: dict[int, typing.Any] = {id(spec): self._embedded_invoker(spec) for spec in module.embedded}
        self._by_binding.update({id(spec): self._remote_invoker(spec, registered) for spec in module.endpoints})
        self.kafka_egresses = [_kafka_io(module).KafkaEgress(spec, self.store) for spec in module.egresses if isinstance(spec, KafkaEgressSpec)]
        self.kinesis_egresses = [_kinesis_io(module)[1](spec, self.store) for spec in module.egresses
                                 if isinstance(spec, KinesisEgressSpec)]
        egresses: dict[str, typing.Any] = {egress.id: egress for egress in [*self.kafka_egresses, *self.kinesis_egresses]}
        self.runtime = Runtime(
            self.store, self.resolve, egresses, self.store.partitions, commit_interval=commit_interval,
            # on the Kafka backend the group assigns partitions; full mailboxes keep their messages in memory
            owned=() if kafka is not None else None, spill=kafka is None, tracing=tracing,
        )
        # the playground egress's reads commit in the runtime's epochs, so it joins once the runtime exists
        self.egress = self._playground_egress(module)
        if self.egress is not None:
            egresses[EGRESS_ID] = self.egress
        self.kafka_ingresses = [_kafka_io(module).KafkaIngress(spec, self.runtime, self.store)
                                for spec in module.ingresses if isinstance(spec, KafkaIngressSpec)]
        self.kinesis_ingresses = [_kinesis_io(module)[0](spec, self.runtime, self.store)
                                  for spec in module.ingresses if isinstance(spec, KinesisIngressSpec)]
        if kafka is not None:
            # refuses ingress topics that do not exist
            kafka.attach(self.runtime, self.kafka_ingresses, self.kinesis_ingresses, self.kinesis_egresses)
        self.ingress = PlaygroundIngress(self.runtime, self.store, *self._idempotency_ttl(module))
        self.runtime.reply_sink = self.ingress
        self.runtime.flows.replies_to = INGRESS_ID  # the flows of replies end at the ingress that asked
        # on the Kafka backend any worker takes any request: what only the owner can answer goes there
        self.forwarding = None if kafka is None else kafka.forwarding(self.runtime)
        self.metrics = Metrics(self.runtime, self.store, self.ingress.responses)
        if self.kafka_ingresses or self.kafka_egresses:
            self.metrics.registry.register(KafkaCollector(self.kafka_ingresses, self.kafka_egresses))
        if self.kinesis_ingresses or self.kinesis_egresses:
            self.metrics.registry.register(KinesisCollector(self.kinesis_ingresses, self.kinesis_egresses))
        if kafka is not None:
            self.metrics.registry.register(KafkaBackendCollector(kafka))
        self.metrics.registry.register(EndpointCollector(self.endpoint_health()))
        for invoker in self._by_binding.values():
            if isinstance(invoker, RemoteInvoker):
                invoker.on_call = self.metrics.remote_call
                invoker.tracing = tracing
        # built here so that an admin API exposed without a token is refused before anything starts
        self.admin = None if admin_port is None else AdminApi(
            self.runtime, self.store, self.metrics.registry, self.describe_functions, admin_token, self.health_status,
            self.forwarding, host=admin_host, port=admin_port, ingress=self.ingress, deployment=self._deployment(),
            savepoints=None if kafka is not None else self.savepoint)
        self._runners: list[web.AppRunner] = []  # aiohttp's servers (the admin API)
        self._servers: list[HttpServer] = []  # the playground ingress's and egress's
        self._sweeper: asyncio.Task | None = None
        self._savepoint_running = False
        # a stop-with-savepoint: (where, the answer of the request that asked); stop() takes it
        self._final_savepoint: tuple[str, asyncio.Future] | None = None
        self.stop_requested = asyncio.Event()

    # -- wiring -----------------------------------------------------------------------------------------

    @staticmethod
    def _check_supported(module: Module, kafka: KafkaBackend | None) -> None:
        if kafka is not None:
            for component in module.ingresses:
                if isinstance(component, KafkaIngressSpec) and component.address != kafka.bootstrap_servers:
                    raise UnsupportedComponentError(
                        f"{module.path}: Kafka ingress {component.id} reads {component.address}, but the application "
                        f"runs on {kafka.bootstrap_servers}: its positions commit in the application's transactions, "
                        "so it must read the same cluster"
                    )
            for component in module.egresses:
                if isinstance(component, PlaygroundEgressSpec):
                    raise UnsupportedComponentError(
                        f"{module.path}: the playground egress keeps its records in the embedded backend's data dir; "
                        "on the Kafka backend use a Kafka egress (io.statefun.kafka.v1/egress)"
                    )
                if isinstance(component, KafkaEgressSpec) and component.address != kafka.bootstrap_servers:
                    raise UnsupportedComponentError(
                        f"{module.path}: Kafka egress {component.id} writes to {component.address}, but the application "
                        f"runs on {kafka.bootstrap_servers}: its records commit in the application's transactions, "
                        "so they must go to the same cluster"
                    )

    def _embedded_invoker(self, spec: EmbeddedFunctions) -> EmbeddedInvoker:
        functions = load_object(spec.module, search_path=spec.base_dir, source=str(self.module.path))
        if not isinstance(functions, StatefulFunctions):
            raise TypeError(f"{spec.module} is a {type(functions).__qualname__}, not a StatefulFunctions")
        return EmbeddedInvoker(functions)

    def _remote_invoker(self, spec: HttpEndpoint, registered: dict) -> RemoteInvoker:
        from pystatefun.runtime.transport import HttpTransport

        health = EndpointHealth(spec.url_path_template)
        transport = HttpTransport(_transport_settings(spec), health=health)
        self._transports.append(transport)
        return RemoteInvoker(spec.url_for, transport, _batch_size(spec.max_num_batch_requests), registered,
                             self.store.save_function_specs, health)

    def _deployment(self) -> Deployment:
        """What the admin API's overview and graph say of this process beyond what its runtime counts."""
        kafka = self.kafka
        module = self.module
        return Deployment(
            backend="embedded" if kafka is None else "kafka",
            application=self.data_dir.resolve().name if kafka is None else kafka.app,
            worker=socket.gethostname() if kafka is None else kafka.worker_id,
            admin=f"http://{self.admin_host}:{self.admin_port}" if kafka is None else kafka.urls.admin,
            ingresses=tuple(spec.id for spec in module.ingresses), egresses=tuple(spec.id for spec in module.egresses),
            lag_sources=self.kafka_ingresses,
        )

    def resolve(self, typename: str) -> typing.Any:
        """The invoker of a function type (None: no binding, so its messages become dead letters)."""
        invoker = self._invokers.get(typename)
        if invoker is None:
            binding = self.module.binding_for(typename)
            invoker = None if binding is None else self._by_binding[id(binding)]
            if isinstance(invoker, EmbeddedInvoker) and invoker.function(typename) is None:
                invoker = None  # the embedded module's StatefulFunctions has no such function
            if invoker is not None:
                self._invokers[typename] = invoker
        return invoker

    def endpoint_health(self) -> list[EndpointHealth]:
        """The health of each remote endpoint of the module."""
        return [invoker.health for invoker in self._by_binding.values() if isinstance(invoker, RemoteInvoker)]

    def describe_functions(self) -> list[dict[str, typing.Any]]:
        """The module's function bindings, for the admin API: where each runs, the function types seen
        with their registered state specs, and for remote endpoints the outcome of the last call."""
        bindings = []
        for spec in [*self.module.embedded, *self.module.endpoints]:
            invoker = self._by_binding[id(spec)]
            entry: dict[str, typing.Any] = {"functions": str(spec.functions)}
            if isinstance(invoker, EmbeddedInvoker):
                entry.update(kind="embedded", module=spec.module)
                typenames = [t for t in invoker.functions.typenames() if self.module.binding_for(t) is spec]
            else:
                entry.update(kind="remote", url=spec.url_path_template, health=invoker.health.describe(),
                             unregistered=invoker.unregistered_types())
                typenames = [t for t in invoker.registered if invoker.registered[t] or t in self.runtime.stats]
            entry["function_types"] = {
                typename: {name: {"typename": s.type_typename, "expire_after_ms": s.ttl_ms or None}
                           for name, s in invoker.specs(typename).items()}
                for typename in sorted(typenames)
            }
            bindings.append(entry)
        return bindings

    def health_status(self) -> dict[str, typing.Any]:
        """The Kafka ingresses and egresses, and the remote endpoints that are failing, for /health."""
        status: dict[str, typing.Any] = {}
        failing = {health.endpoint: health.describe() for health in self.endpoint_health() if health.failing_since is not None}
        if failing:
            status["failing_endpoints"] = failing
        if self.kafka_ingresses:
            status["kafka_ingresses"] = {ingress.spec.id: ingress.status() for ingress in self.kafka_ingresses}
        if self.kafka_egresses:
            status["kafka_egresses"] = {egress.id: egress.status() for egress in self.kafka_egresses}
        if self.kinesis_ingresses:
            status["kinesis_ingresses"] = {ingress.spec.id: ingress.status() for ingress in self.kinesis_ingresses}
        if self.kinesis_egresses:
            status["kinesis_egresses"] = {egress.id: egress.status() for egress in self.kinesis_egresses}
        return status

    def _playground_egress(self, module: Module) -> PlaygroundEgress | None:
        specs = [e for e in module.egresses if isinstance(e, PlaygroundEgressSpec)]
        return PlaygroundEgress(self.runtime, self.store, specs[0].topics) if specs else None

    @staticmethod
    def _idempotency_ttl(module: Module) -> tuple[int]:
        specs = [i for i in module.ingresses if isinstance(i, PlaygroundIngressSpec)]
        ttl = specs[0].idempotency_key_ttl.total_seconds() if specs else 24 * 3600
        return (int(ttl * 1000),)

    # -- running ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.kafka is not None:
            await self.runtime.start()
            # timer ids are unique across the workers that will own a partition's timers over time
            self.runtime.timers = TimerService(time.time_ns())
            await self.kafka.start()
            log.info("kafka backend: application %s on %s, %d partitions, worker %s", self.kafka.app,
                     self.kafka.bootstrap_servers, self.kafka.partitions, self.kafka.worker_id)
        else:
            recovery = self.store.recover()
            log.info(
                "data dir %s: %d partitions, %s to resume, %s pending, %s parked (pystatefun parked lists them)",
                self.data_dir, self.store.partitions, plural(recovery.inbox_size, "message"),
                plural(len(recovery.timers), "timer"), plural(len(recovery.parked), "address", "addresses"),
            )
            await self.runtime.start(recovery)
        for binding in self.module.embedded:
            log.info("functions %s: embedded, from %s", binding.functions, binding.module)
        for binding in self.module.endpoints:
            log.info("functions %s: remote, at %s", binding.functions, binding.url_path_template)
        for egress in self.kafka_egresses:
            if self.kafka is None:  # on the Kafka backend the records go in the epochs' transactions
                await egress.start()
            log.info("kafka egress %s: %s to %s", egress.id, egress.semantic, egress.spec.address)
        for egress in self.kinesis_egresses:
            if self.kafka is None:  # on the Kafka backend the worker forwards them from <app>.kinesis-egress
                await egress.start()
            log.info("kinesis egress %s: at most %d records in flight", egress.id, egress.spec.max_outstanding_records)
        for ingress in self.kafka_ingresses:
            if self.kafka is None:  # on the Kafka backend the worker's consumer reads the topics
                await ingress.start()
            log.info("kafka ingress %s: topics %s from %s, group %s", ingress.spec.id, ", ".join(ingress.routes),
                     ingress.spec.address, ingress.spec.consumer_group_id)
        for kinesis_ingress in self.kinesis_ingresses:
            if self.kafka is None:  # on the Kafka backend each stream is read by the owner of its partition
                await kinesis_ingress.start()
            log.info("kinesis ingress %s: streams %s", kinesis_ingress.spec.id, ", ".join(kinesis_ingress.routes))
        for spec in self.module.ingresses:
            if not isinstance(spec, PlaygroundIngressSpec):
                continue
            wrap = None if self.forwarding is None else functools.partial(self.forwarding.ingress_handler, answered_by_owner)
            await self._listen(self.ingress.server(wrap), spec.host, spec.port + self.port_offset, *_INGRESS)
            log.info("playground ingress %s listening on http://%s:%d", spec.id, spec.host, spec.port + self.port_offset)
        for spec in self.module.egresses:
            if not isinstance(spec, PlaygroundEgressSpec):
                continue
            await self._listen(self.egress.server(), spec.host, spec.port, *_EGRESS)
            log.info("playground egress %s listening on http://%s:%d (topics: %s)", spec.id, spec.host, spec.port, ", ".join(spec.topics))
        if self.admin is not None:
            try:
                runner, _ = await serve_admin(self.admin.app(), self.admin_host, self.admin_port)
            except OSError as e:
                raise PortUnavailable(*_ADMIN, self.admin_host, self.admin_port, e) from None
            self._runners.append(runner)
            log.info("admin API listening on http://%s:%d%s", self.admin_host, self.admin_port,
                     " (bearer token required)" if self.admin_token else "")
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def _listen(self, server: HttpServer, host: str, port: int, component: str, setting: str) -> None:
        try:
            await server.start(host, port)
        except OSError as e:
            raise PortUnavailable(component, setting, host, port, e) from None
        self._servers.append(server)

    def check_ports(self) -> None:
        """Raises PortUnavailable for the first listener whose port is taken, before anything starts: the
        first thing a user sees is what to change, not a recovery log and a clean stop."""
        listeners = [(*_INGRESS, s.host, s.port + self.port_offset) for s in self.module.ingresses
                     if isinstance(s, PlaygroundIngressSpec)]
        listeners += [(*_EGRESS, s.host, s.port) for s in self.module.egresses if isinstance(s, PlaygroundEgressSpec)]
        if self.admin is not None:
            listeners.append((*_ADMIN, self.admin_host, self.admin_port))
        for component, setting, host, port in listeners:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
                try:
                    probe.bind((host, port))
                except OSError as e:
                    raise PortUnavailable(component, setting, host, port, e) from None

    async def _sweep_loop(self, every: float = 60.0) -> None:
        while True:
            await asyncio.sleep(every)
            self.store.sweep(self.runtime.now_ms())

    async def savepoint(self, url: str, stop: bool = False) -> dict[str, typing.Any]:
        """Takes a savepoint at ``url`` (embedded backend) and returns its manifest. Online, the application
        goes on; with ``stop``, it stops first (no more input, the last epoch committed, the Kafka egresses
        drained), the savepoint is taken, and the application stays stopped: the cut to move from."""
        if self._savepoint_running or self._final_savepoint is not None:
            raise SavepointError("a savepoint is being taken already: wait for it to finish")
        self._savepoint_running = True
        try:
            await asyncio.to_thread(savepoint_storage.check_new, url)  # before stopping anything
            if stop:
                answer = asyncio.get_running_loop().create_future()
                self._final_savepoint = (url, answer)
                self.stop_requested.set()
                return await answer
            manifest = await asyncio.to_thread(embedded_savepoints.take_online, self.store, url, self.module)
            log.info("savepoint taken at %s: %s, %s", url, plural(manifest.counts["state"], "state value"),
                     plural(manifest.counts["messages"], "message"))
            return manifest.describe()
        finally:
            self._savepoint_running = False

    async def _take_final_savepoint(self) -> None:
        """The savepoint of a stop-with-savepoint, once nothing changes any more."""
        url, answer = self._final_savepoint
        try:
            manifest = await asyncio.to_thread(embedded_savepoints.take_online, self.store, url, self.module, "stop")
        except Exception as error:  # the request that asked gets it; the application is stopped either way
            log.error("stop-with-savepoint: the savepoint at %s failed: %s", url, error)
            if not answer.done():  # (its client may have gone: the log says it then)
                answer.set_exception(error)
            return
        log.info("stopped with a savepoint at %s: %s, %s; restore it with pystatefun run --from-savepoint %s", url,
                 plural(manifest.counts["state"], "state value"), plural(manifest.counts["messages"], "message"), url)
        if not answer.done():
            answer.set_result(manifest.describe())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for ingress in [*self.kafka_ingresses, *self.kinesis_ingresses]:
            await ingress.stop()
        for server in self._servers:
            await server.close()
        # the admin API stops listening now; a stop-with-savepoint request still gets its answer once the
        # savepoint below is taken, however long the egresses take to drain before it, so its handler is let
        # be (aiohttp's cleanup would cancel it after its shutdown timeout) until then
        if self._final_savepoint is None:
            for runner in self._runners:
                await runner.cleanup()
        else:
            for runner in self._runners:
                for site in list(runner.sites):
                    await site.stop()
        if self.forwarding is not None:
            await self.forwarding.close()
        if self.kafka is not None:
            await self.kafka.stop()  # commits and hands the partitions over
        await self.runtime.stop()
        if self.kafka is None:
            for egress in [*self.kafka_egresses, *self.kinesis_egresses]:
                await egress.stop()
        if self._final_savepoint is not None:
            await self._take_final_savepoint()
            for runner in self._runners:
                await runner.cleanup()  # after the answer is written
        for transport in self._transports:
            await transport.close()
        self.store.close()
        log.info("stopped: the last epoch is committed, %d epochs in this run", self.runtime.commits)

    async def run_until_signalled(self) -> None:
        """Runs until SIGINT or SIGTERM, then stops cleanly (a kill -9 is fine too: nothing is lost)."""
        stop = stop_signal()
        self.check_ports()
        try:
            await self.start()
            signalled = asyncio.ensure_future(stop.wait())
            requested = asyncio.ensure_future(self.stop_requested.wait())  # a stop-with-savepoint
            await asyncio.wait([signalled, requested, self.runtime.failed], return_when=asyncio.FIRST_COMPLETED)
            signalled.cancel()
            requested.cancel()
        finally:
            await self.stop()
        if self.runtime.failed.done():
            raise RuntimeFailure(f"the runtime stopped: {self.runtime.failed.exception()!r}; "
                                 "a restart continues from the last commit")


def _batch_size(max_num_batch_requests: int) -> int:
    # maxNumBatchRequests <= 0 disables address blocking in StateFun; batches stay bounded here anyway
    return max_num_batch_requests if max_num_batch_requests > 0 else 1000


def _transport_settings(spec: HttpEndpoint) -> typing.Any:
    from pystatefun.runtime.transport import RetryPolicy, TransportSettings

    t = spec.transport
    retry = RetryPolicy()
    if spec.retry is not None:
        r = spec.retry
        retry = RetryPolicy(
            max_attempts=r.max_attempts, initial_backoff=r.initial_backoff, max_backoff=r.max_backoff,
            retryable_status=frozenset(r.retryable_status), function_error_max_attempts=r.function_error_max_attempts,
        )
    password = t.client_key_password.read_text().strip() if t.client_key_password else None
    return TransportSettings(
        call=t.call, connect=t.connect, read=t.read, write=t.write, pool_size=t.pool_size, pool_ttl=t.pool_ttl,
        payload_max_bytes=t.payload_max_bytes, trust_cacerts=t.trust_cacerts, client_cert=t.client_cert,
        client_key=t.client_key, client_key_password=password, retry=retry,
    )
