"""A real Apache Kafka (KRaft) for development, tests, benchmarks and CI, with nothing installed by hand.

Kafka is not packaged for this machine and its binary distribution cannot be downloaded, but every jar of
the broker is on Maven Central. So `fetch_kafka()` has Maven resolve `org.apache.kafka:kafka_2.13` (the
broker) with its runtime dependencies into a cache directory once, and `KafkaCluster` runs
`java -cp '<libs>/*' kafka.Kafka server.properties` for each node, exactly what `bin/kafka-server-start.sh`
of the distribution does.

Every node is a combined broker and controller (`process.roles=broker,controller`) with a static quorum
(`controller.quorum.voters`), listening on 127.0.0.1 only: PLAINTEXT for clients and between brokers,
CONTROLLER for the quorum. `auto.create.topics.enable` is false, so code under test must create its topics
the way a production deployment would have to, instead of a typo silently creating a new one.

Python use::

    with KafkaCluster(nodes=3) as cluster:
        producer = confluent_kafka.Producer({"bootstrap.servers": cluster.bootstrap_servers})
        cluster.stop_node(0)    # a broker-restart fault
        cluster.start_node(0)   # same data and ports: it rejoins the cluster

Command line (the brokers keep running after `start` returns; `stop` may run in another process)::

    python -m tests.support.kafka start [--nodes 3] [--dir D]   # stdout: PYSTATEFUN_KAFKA_BOOTSTRAP=...
    python -m tests.support.kafka status [--dir D]
    python -m tests.support.kafka stop [--dir D] [--keep]

Environment: PYSTATEFUN_KAFKA_HOME overrides the cache directory of the jars
(default ~/.cache/pystatefun/kafka-<KAFKA_VERSION>); PYSTATEFUN_KAFKA_DIR is the command line's default --dir
(else ~/.cache/pystatefun/kafka-run); JAVA_HOME picks the Java to run (else `java` on PATH).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TextIO

# The newest Kafka whose broker resolves from Maven Central here and runs on Java 17 (its classes are Java 17
# bytecode). LOG4J_VERSION is the log4j-core that this Kafka declares: the SLF4J binding we add must match it.
KAFKA_VERSION = "4.4.0"
LOG4J_VERSION = "2.25.5"

CACHE_ROOT = Path.home() / ".cache" / "pystatefun"
BOOTSTRAP_ENV = "PYSTATEFUN_KAFKA_BOOTSTRAP"
DIR_ENV = "PYSTATEFUN_KAFKA_DIR"
STATE_FILE = "cluster.json"

# Kafka's build declares slf4j-api 1.7 with log4j-core as the backend, but the binding between the two
# (log4j-slf4j-impl, for SLF4J 1.x) is only put into the distribution's libs/ by its build, not declared as a
# dependency of kafka_2.13: without it the broker logs nothing at all.
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.pystatefun</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
"""


@contextlib.contextmanager
def shared_broker() -> Iterator[str]:
    """The bootstrap servers of $PYSTATEFUN_KAFKA_BOOTSTRAP (a broker started beforehand, as CI's), else of
    a one-node cluster started here and stopped on leaving: the tests' session broker and the bench
    scripts'."""
    bootstrap = os.environ.get(BOOTSTRAP_ENV)
    if bootstrap:
        yield bootstrap
        return
    with KafkaCluster(nodes=1) as cluster:
        yield cluster.bootstrap_servers


class KafkaError(RuntimeError):
    """Kafka could not be fetched, or a broker did not start or stop."""


def kafka_home() -> Path:
    """The directory holding `libs/` with the broker's jars (PYSTATEFUN_KAFKA_HOME, else the cache)."""
    override = os.environ.get("PYSTATEFUN_KAFKA_HOME")
    return Path(override) if override else CACHE_ROOT / f"kafka-{KAFKA_VERSION}"


def fetch_kafka() -> Path:
    """Returns the directory of the broker's jars, fetching them with Maven the first time.

    A marker file written last makes later calls instant and tells an interrupted fetch from a complete
    one; a file lock makes a second process (pytest-xdist, CI running a broker while tests start) wait for
    the first one's fetch instead of racing it in the same directory."""
    home = kafka_home()
    libs, marker = home / "libs", home / "fetched"
    if marker.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return libs
        started = time.monotonic()
        print(f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} ...", file=sys.stderr)
        (home / "pom.xml").write_text(_POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION))
        partial = home / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(libs, ignore_errors=True)
        try:
            result = subprocess.run(
                ["mvn", "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={partial}"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True)
        except FileNotFoundError as e:
            raise KafkaError("Maven (mvn) is needed to fetch Kafka's jars; install it (apt-get install maven)") from e
        if result.returncode != 0 or not (partial / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            raise KafkaError(f"fetching Kafka {KAFKA_VERSION} with Maven failed ({result.returncode}):\n"
                             f"{(result.stdout + result.stderr)[-4000:]}")
        partial.rename(libs)
        marker.write_text(f"{KAFKA_VERSION}\n")
        print(f"fetched Kafka {KAFKA_VERSION} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return libs


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java is None or not os.access(java, os.X_OK):
        raise KafkaError(f"Kafka {KAFKA_VERSION} needs Java 17 or newer: no {java or 'java on PATH'}")
    return java


def _cluster_id() -> str:
    """A random id in Kafka's Uuid format (URL-safe base64 without padding). Like Kafka's Uuid.randomUuid(),
    it never starts with '-', which a command line would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, all different (every socket is held until all are picked). Another
    process may still take one before the broker binds it: `KafkaCluster.start` then starts again."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _kill_with_parent_hook() -> Callable[[], None] | None:
    """A `preexec_fn` after which the kernel SIGKILLs the child when the thread that started it ends
    (PR_SET_PDEATHSIG), so a crashed or killed test run leaves no broker behind. prctl is looked up here, in
    the parent: the child of a process with threads (librdkafka's) should do as little as possible before
    exec. None where there is no prctl (not Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)
    return lambda: prctl(pr_set_pdeathsig, sigkill)


def _pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie counts as gone (a container's PID 1 may never reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class _Node:
    """One broker+controller: its ports, its directory (configuration, data, logs) and its process, or
    only its pid when it was started by another process (`KafkaCluster.attach`)."""

    node_id: int
    port: int
    controller_port: int
    dir: Path
    pid: int | None = None
    process: subprocess.Popen | None = None

    @property
    def config(self) -> Path:
        return self.dir / "server.properties"

    @property
    def output(self) -> Path:
        """The JVM's stdout and stderr: what goes wrong before logging starts, or in it."""
        return self.dir / "stdout.log"

    @property
    def log(self) -> Path:
        return self.dir / "broker.log"

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.pid is not None and _pid_alive(self.pid) and self._is_ours()

    def _is_ours(self) -> bool:
        """For a pid read from a state file: is it still this broker, not a later process given the same
        pid after the broker died?"""
        try:
            return str(self.config).encode() in Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False

    def logs(self) -> str:
        return (f"--- node {self.node_id}: {self.output} (tail) ---\n{_tail(self.output)}\n"
                f"--- node {self.node_id}: {self.log} (tail) ---\n{_tail(self.log)}")


class KafkaCluster:
    """`nodes` KRaft brokers (each also a controller) on 127.0.0.1, data in `workdir` (a new temporary
    directory when None). Nodes are addressed by index 0..nodes-1; their Kafka node ids are index + 1.

    With `detach=False` (tests) the brokers die with the thread that started them, so start the cluster
    from one that lives as long as it should (the main thread, as pytest fixtures do). With `detach=True`
    (the command line) they run on until `stop()`, which another process can call on
    `KafkaCluster.attach(workdir)`. `stop()` deletes the brokers' data unless `keep` is true."""

    def __init__(self, nodes: int = 1, workdir: str | Path | None = None, *, keep: bool = False,
                 detach: bool = False, start_timeout: float = 120.0) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="pystatefun-kafka-") if workdir is None else workdir).resolve()
        self.keep = keep
        self.detach = detach
        self.start_timeout = start_timeout
        self.cluster_id = _cluster_id()
        self.nodes = [_Node(i + 1, 0, 0, self.workdir / f"node-{i + 1}") for i in range(nodes)]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def __enter__(self) -> "KafkaCluster":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- starting ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Formats the nodes' storage, starts them and waits until a client sees every broker. Raises
        KafkaError, with the tail of the brokers' logs, when one exits or the cluster is not up in time."""
        if any(node.dir.exists() for node in self.nodes):
            raise KafkaError(f"{self.workdir} already holds a cluster's nodes; stop it or use another directory")
        libs = fetch_kafka()
        if not self.detach:
            atexit.register(self.stop)
        try:
            for node in self.nodes:
                node.dir.mkdir(parents=True)
                (node.dir / "log4j2.properties").write_text(_LOG4J2.format(log=node.log))
            # A port picked as free can be taken by someone else before the broker binds it (a client's
            # ephemeral port can land on it): then every node starts again on new ports. The quorum's
            # addresses are not part of the formatted storage, so only the configuration changes.
            for attempt in range(3):
                self._assign_ports()
                if attempt == 0:
                    self._format(libs)
                try:
                    self._launch(libs, self.nodes)
                    self._wait_for_brokers(self.nodes)
                    return
                except KafkaError:
                    if attempt == 2 or not any("Address already in use" in _tail(node.output, 100_000)
                                               + _tail(node.log, 100_000) for node in self.nodes):
                        raise
                    self._terminate(self.nodes, timeout=10)
        except BaseException:
            self.stop()
            raise

    def start_node(self, index: int) -> None:
        """Starts a node stopped by `stop_node` again, with its data and ports, and waits until clients
        see it among the brokers."""
        node = self.nodes[index]
        if node.running():
            raise KafkaError(f"node {node.node_id} is running")
        self._launch(fetch_kafka(), [node])
        self._wait_for_brokers([node])

    def _assign_ports(self) -> None:
        ports = _free_ports(2 * len(self.nodes))
        for node, (port, controller_port) in zip(self.nodes, zip(ports[::2], ports[1::2])):
            node.port, node.controller_port = port, controller_port
        for node in self.nodes:
            node.config.write_text(self._properties(node))

    def _properties(self, node: _Node) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        # With one node every internal topic must make do with one replica; with more, they get three
        # and need two in sync, as production settings would, so that a stopped node is survivable.
        replicas, min_isr = (1, 1) if len(self.nodes) == 1 else (min(3, len(self.nodes)), 2)
        settings = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": node.dir / "data",
            "auto.create.topics.enable": "false",
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            # The first consumer group or transaction creates these topics: 50 partitions each (the
            # default) makes that take seconds on a small machine, for no use on a development broker.
            "offsets.topic.num.partitions": 5,
            "transaction.state.log.num.partitions": 5,
            # A group's first member gets its partitions at once instead of after the default 3 s wait.
            "group.initial.rebalance.delay.ms": 0,
            # A restarted broker is refused (DUPLICATE_BROKER_REGISTRATION) until its previous incarnation's
            # session with the controller expires, even after a clean shutdown at times: 9 s by default
            # (heartbeats every 2 s), 3 s here, which also fences a killed broker that much sooner.
            "broker.heartbeat.interval.ms": 500,
            "broker.session.timeout.ms": 3000,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _jvm(self, libs: Path, node: _Node, main: str) -> list[str]:
        return [_java(), "-Xmx512m", f"-Dlog4j2.configurationFile={node.dir / 'log4j2.properties'}",
                "-cp", f"{libs}/*", main]

    def _format(self, libs: Path) -> None:
        """Formats every node's storage with the cluster id (one JVM each, run in parallel)."""
        formats = []
        for node in self.nodes:
            command = self._jvm(libs, node, "kafka.tools.StorageTool") + [
                "format", "--config", str(node.config), "--cluster-id", self.cluster_id]
            formats.append((node, subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT, text=True)))
        for node, process in formats:
            output = process.communicate()[0]
            if process.returncode != 0:
                raise KafkaError(f"formatting node {node.node_id}'s storage failed:\n{output[-3000:]}")

    def _launch(self, libs: Path, nodes: list[_Node]) -> None:
        for node in nodes:
            with open(node.output, "ab") as output:
                # Its own session: a Ctrl-C in the terminal goes to the test run, whose teardown then
                # stops the brokers in order, and a detached broker is not tied to the terminal at all.
                node.process = subprocess.Popen(
                    self._jvm(libs, node, "kafka.Kafka") + [str(node.config)], cwd=node.dir,
                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=None if self.detach else _kill_with_parent_hook())
            node.pid = node.process.pid

    def _wait_for_brokers(self, nodes: list[_Node]) -> None:
        """Waits until each node listens and an AdminClient's metadata lists all of `nodes` as brokers
        (which KRaft does once a broker is registered and unfenced, i.e. ready for clients)."""
        deadline = time.monotonic() + self.start_timeout
        for node in nodes:
            while not self._listening(node):
                self._check_alive(nodes, deadline)
                time.sleep(0.1)
        from confluent_kafka.admin import AdminClient  # imported late: fetching and `stop` do not need it

        admin = AdminClient({"bootstrap.servers": ",".join(f"127.0.0.1:{n.port}" for n in nodes)})
        wanted = {node.node_id for node in nodes}
        while True:
            self._check_alive(nodes, deadline)
            with contextlib.suppress(Exception):  # not answering yet: wait on
                if wanted <= set(admin.list_topics(timeout=2).brokers):
                    return
            time.sleep(0.2)

    def _check_alive(self, nodes: list[_Node], deadline: float) -> None:
        for node in nodes:
            if not node.running():
                raise KafkaError(f"Kafka node {node.node_id} exited during start\n{self.logs()}")
        if time.monotonic() > deadline:
            raise KafkaError(f"Kafka nodes {[n.node_id for n in nodes]} not up after {self.start_timeout:.0f}s"
                             f"\n{self.logs()}")

    @staticmethod
    def _listening(node: _Node) -> bool:
        try:
            socket.create_connection(("127.0.0.1", node.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def logs(self) -> str:
        """The tails of every node's output and log, for error messages."""
        return "\n".join(node.logs() for node in self.nodes)

    # --- stopping ------------------------------------------------------------------------------------

    def stop_node(self, index: int, timeout: float = 30.0) -> None:
        """Stops one node as an operator would (SIGTERM: a controlled shutdown that hands its partitions'
        leadership to the others), keeping its data and ports for `start_node`."""
        self._terminate([self.nodes[index]], timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stops every node (SIGTERM, then SIGKILL after `timeout`) and deletes their data unless `keep`.

        The timeout is short because a cluster stopping as a whole loses its controller quorum: a broker
        whose controlled shutdown was not acknowledged before that waits minutes for it (three nodes
        otherwise stop in about 6 s, one in under 1 s). Kafka recovers from the kill when started again."""
        atexit.unregister(self.stop)
        self._terminate(self.nodes, timeout)
        if self.keep:
            return
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            for node in self.nodes:
                shutil.rmtree(node.dir, ignore_errors=True)
            (self.workdir / STATE_FILE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.workdir.rmdir()  # only when nothing else is in it

    @staticmethod
    def _terminate(nodes: list[_Node], timeout: float) -> None:
        """SIGTERM to all of `nodes` at once, SIGKILL to those still running after `timeout`. (One after the
        other would be no cleaner: the last node would wait for a quorum that is gone.)"""
        running = [node for node in nodes if node.running()]
        for node in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(node.running() for node in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        for node in running:
            if node.running():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.pid, signal.SIGKILL)
            if node.process is not None:
                node.process.wait()
            node.pid = node.process = None

    # --- state for the command line ------------------------------------------------------------------

    def save_state(self) -> Path:
        """Writes the nodes' pids and ports to `workdir/cluster.json`, for `attach` in another process."""
        path = self.workdir / STATE_FILE
        path.write_text(json.dumps({
            "kafka_version": KAFKA_VERSION,
            "cluster_id": self.cluster_id,
            "bootstrap_servers": self.bootstrap_servers,
            "nodes": [{"node_id": n.node_id, "pid": n.pid, "port": n.port, "controller_port": n.controller_port,
                       "dir": str(n.dir)} for n in self.nodes],
        }, indent=2) + "\n")
        return path

    @classmethod
    def attach(cls, workdir: str | Path) -> "KafkaCluster":
        """The cluster that `start` on the command line left running in `workdir` (KafkaError if none)."""
        path = Path(workdir) / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise KafkaError(f"no Kafka cluster state in {path}: {e}") from e
        cluster = cls(len(state["nodes"]), workdir, detach=True)
        cluster.cluster_id = state["cluster_id"]
        cluster.nodes = [_Node(n["node_id"], n["port"], n["controller_port"], Path(n["dir"]), n["pid"])
                         for n in state["nodes"]]
        return cluster


# --- command line ----------------------------------------------------------------------------------------

def _default_dir() -> Path:
    """Where the command line keeps a cluster's data and state file: $PYSTATEFUN_KAFKA_DIR, else the cache
    (so that `topic` and `read` can be pointed at a cluster started with another --dir)."""
    override = os.environ.get(DIR_ENV)
    return Path(override) if override else CACHE_ROOT / "kafka-run"


def _start(args: argparse.Namespace, out: TextIO) -> int:
    workdir = Path(args.dir)
    with contextlib.suppress(KafkaError):
        previous = KafkaCluster.attach(workdir)
        if any(node.running() for node in previous.nodes):
            print(f"a Kafka cluster already runs from {workdir}: `stop` it first", file=sys.stderr)
            return 1
        previous.stop()  # what a cluster that died or was killed left behind
    started = time.monotonic()
    cluster = KafkaCluster(args.nodes, workdir, detach=True)
    cluster.start()
    cluster.save_state()
    print(f"Kafka {KAFKA_VERSION}: {args.nodes} node(s) up in {time.monotonic() - started:.1f}s, "
          f"data and logs in {workdir}", file=sys.stderr)
    print(f"{BOOTSTRAP_ENV}={cluster.bootstrap_servers}", file=out)
    return 0


def _stop(args: argparse.Namespace) -> int:
    try:
        cluster = KafkaCluster.attach(args.dir)
    except KafkaError:
        print(f"no Kafka cluster was started from {args.dir}", file=sys.stderr)
        return 0  # so that cleanup steps can always call it
    cluster.keep = args.keep
    cluster.stop()
    print(f"stopped the Kafka cluster of {args.dir}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace, out: TextIO) -> int:
    cluster = KafkaCluster.attach(args.dir)
    for node in cluster.nodes:
        state = "running" if node.running() else "stopped"
        print(f"node {node.node_id}: {state}, pid {node.pid}, 127.0.0.1:{node.port} (controller "
              f"{node.controller_port}), {node.dir}", file=out)
    print(f"{BOOTSTRAP_ENV}={cluster.bootstrap_servers}", file=out)
    return 0 if all(node.running() for node in cluster.nodes) else 1


def _topic(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient, NewTopic

    cluster = KafkaCluster.attach(args.dir)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    replication = min(3, len(cluster.nodes))
    for future in admin.create_topics([NewTopic(args.name, args.partitions, replication)]).values():
        future.result(30)
    print(f"created topic {args.name}: {args.partitions} partition(s), replication {replication}", file=sys.stderr)
    return 0


def _read(args: argparse.Namespace, out: TextIO) -> int:
    """Prints every committed record of a topic, one value per line (as text), from the beginning to the
    end as it is now."""
    from confluent_kafka import Consumer, TopicPartition

    cluster = KafkaCluster.attach(args.dir)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "scripts-kafka-read",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(args.name, timeout=30).topics[args.name]
        if metadata.error is not None:
            raise KafkaError(f"topic {args.name}: {metadata.error.str()}")
        ends = {p: consumer.get_watermark_offsets(TopicPartition(args.name, p), timeout=30)[1] for p in metadata.partitions}
        consumer.assign([TopicPartition(args.name, p, 0) for p in ends])
        # Done when the position reaches the end: not when the last record is read, since a transactional
        # topic ends with a commit marker, which the position passes without a record.
        remaining = [TopicPartition(args.name, p) for p, end in ends.items() if end > 0]
        positions, moved = None, time.monotonic()
        while remaining:
            record = consumer.poll(0.2)
            if record is not None and record.error() is None:
                print(record.value().decode(errors="replace"), file=out)
            now = [(tp.partition, tp.offset) for tp in consumer.position(remaining)]
            if now != positions:
                positions, moved = now, time.monotonic()
            elif time.monotonic() - moved > 10:
                break  # not moving (the ends are read_committed's, so this is not expected)
            remaining = [TopicPartition(args.name, p) for p, offset in now if offset < ends[p]]
    finally:
        consumer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.kafka", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start a cluster that runs on after this command returns")
    start.add_argument("--nodes", type=int, default=1)
    stop = commands.add_parser("stop", help="stop the cluster started from --dir and delete its data")
    stop.add_argument("--keep", action="store_true", help="keep the data and logs")
    status = commands.add_parser("status", help="print its nodes; exit 1 unless all run")
    topic = commands.add_parser("topic", help="create a topic on the cluster")
    topic.add_argument("name")
    topic.add_argument("--partitions", type=int, default=1)
    read = commands.add_parser("read", help="print the committed records of a topic, one value per line")
    read.add_argument("name")
    for command in (start, stop, status, topic, read):
        command.add_argument("--dir", default=str(_default_dir()), help="its data, logs and state file "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            return _start(args, sys.stdout)
        if args.command == "stop":
            return _stop(args)
        if args.command == "topic":
            return _topic(args)
        if args.command == "read":
            return _read(args, sys.stdout)
        return _status(args, sys.stdout)
    except KafkaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
