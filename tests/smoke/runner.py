"""One smoke run: start Kafka topics, the function form (behind the fault proxy), the backend; send the
generated messages through the real ingress while the fault schedules kill things; then verify every
instance's counter, and print one summary line. ``python -m tests.smoke --help``."""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kafka.harness import create_topics
from support.kafka import BOOTSTRAP_ENV, KafkaCluster

from . import REPO
from .commands import CommandGenerator, Parameters, verify_command
from .faults import FaultProxy, KillSchedule
from .ingress import HttpIngress, KafkaIngress, paced
from .processes import (
    FORMS,
    PROXY_DELAY,
    EmbeddedBackend,
    FunctionForm,
    FunctionServer,
    KafkaBackend,
    module_yaml,
    prepare_environment,
)
from .tracker import Tracker
from .verifier import OverCounted, Verifier

WORK_ROOT = Path(os.environ.get("PYSTATEFUN_SMOKE_DIR", "/tmp/pystatefun-smoke"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/smoke", description="The smoke test under faults (issue 6). "
                                "`scripts/smoke matrix --help` runs every backend x function form.")
    p.add_argument("--backend", choices=["embedded", "kafka"], default="embedded")
    p.add_argument("--function", choices=FORMS, default="embedded",
                   help="the interpreter's form: embedded (in the runtime), remote (pystatefun serve), or the "
                        "official SDKs python/java/go/js (compat/interpreter/<lang>/serve)")
    p.add_argument("--ingress", choices=["http", "kafka"], help="default: http on embedded, kafka on kafka")
    p.add_argument("--instances", type=int, default=64, help="numberOfFunctionInstances")
    p.add_argument("--messages", type=int, default=5000, help="messageCount")
    p.add_argument("--kills", type=int, default=3, help="kill -9 of the runtime (embedded) or a random worker (kafka)")
    p.add_argument("--function-kills", type=int, help="kill -9 of the function server (remote forms; default --kills)")
    p.add_argument("--proxy-503", type=float, default=0.02, help="fraction of remote calls answered 503 (a gateway failing)")
    p.add_argument("--proxy-delay", type=float, default=0.005,
                   help=f"fraction of remote calls answered after {PROXY_DELAY}s, past the read timeout")
    p.add_argument("--broker-restarts", type=int, default=0,
                   help="stop and start a random broker of a three-node cluster started for the run")
    p.add_argument("--seed", type=int, help="randomGeneratorSeed (default: random, printed)")
    p.add_argument("--command-depth", type=int, default=10, help="commandDepth")
    p.add_argument("--max-commands-per-depth", type=int, default=3, help="maxCommandsPerDepth")
    p.add_argument("--concurrency", type=int, default=16, help="HTTP requests in flight")
    p.add_argument("--rate", type=float, help="messages per second at most (default: none on http, 250 on kafka)")
    p.add_argument("--workers", type=int, default=3, help="Kafka backend: worker processes")
    p.add_argument("--partitions", type=int, default=6, help="Kafka backend: partitions")
    p.add_argument("--timeout", type=float, default=600, help="seconds the verification may take")
    p.add_argument("--workdir", type=Path, help=f"default: a new directory under {WORK_ROOT}")
    p.add_argument("--keep", action="store_true", help="keep the work dir after a pass too")
    p.add_argument("--uncounted", type=int, default=0,
                   help="self-check of the checker: this many accepted messages with increments are left out of "
                        "the tracker, so the run must fail with 'over-counted'")
    return p


class Log:
    def __init__(self, path: Path):
        self.started = time.monotonic()
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 - open for the whole run

    def __call__(self, line: str) -> None:
        text = f"[{time.monotonic() - self.started:6.0f}s] {line}"
        print(text, flush=True)
        self.file.write(text + "\n")


def repro_command(args: argparse.Namespace, seed: int) -> str:
    parts = ["scripts/smoke", "--backend", args.backend, "--function", args.function, "--ingress", args.ingress,
             "--instances", args.instances, "--messages", args.messages, "--kills", args.kills,
             "--function-kills", args.function_kills, "--proxy-503", args.proxy_503, "--proxy-delay", args.proxy_delay,
             "--broker-restarts", args.broker_restarts, "--seed", seed]
    if args.backend == "kafka":
        parts += ["--workers", args.workers, "--partitions", args.partitions]
    if args.ingress == "kafka":
        parts += ["--rate", args.rate]
    for option in ("command_depth", "max_commands_per_depth"):
        if getattr(args, option) != parser().get_default(option):
            parts += [f"--{option.replace('_', '-')}", getattr(args, option)]
    if args.uncounted:
        parts += ["--uncounted", args.uncounted]
    return " ".join(shlex.quote(str(part)) for part in parts)


class Smoke:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        args.ingress = args.ingress or ("http" if args.backend == "embedded" else "kafka")
        self.form = FunctionForm(args.function)
        if args.function_kills is None:
            args.function_kills = 0 if self.form.embedded else args.kills
        if args.rate is None:
            args.rate = 0 if args.ingress == "http" else 250
        self.seed = args.seed if args.seed is not None else random.randrange(2**31)
        self.run_id = f"smoke-{self.seed}-{uuid.uuid4().hex[:6]}"
        self.workdir: Path = (args.workdir or WORK_ROOT / self.run_id).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = Log(self.workdir / "smoke.log")
        self.rng = random.Random(self.seed ^ 0x5EED)
        self.stop_event = threading.Event()
        self.cluster: KafkaCluster | None = None
        self.server: FunctionServer | None = None
        self.proxy: FaultProxy | None = None
        self.backend = None
        self.verifier: Verifier | None = None
        self.kafka_ingress: KafkaIngress | None = None
        self.http: HttpIngress | None = None
        self.counts = {"runtime_kills": 0, "function_kills": 0, "broker_restarts": 0, "process_exits": 0}
        self.tracker = Tracker(args.instances)
        self.uncounted: set[int] = set()

    # --- setup -------------------------------------------------------------------------------------------

    def setup(self) -> None:
        a = self.args
        unavailable = self.form.available()
        if unavailable:
            raise SetupError(f"function form {a.function} is not available: {unavailable}")
        prepare_environment()
        if a.broker_restarts:
            self.log("starting a three-node Kafka cluster for the broker restarts")
            self.cluster = KafkaCluster(3, self.workdir / "kafka", keep=True)
            self.cluster.start()
            self.bootstrap = self.cluster.bootstrap_servers
        elif os.environ.get(BOOTSTRAP_ENV):
            self.bootstrap = os.environ[BOOTSTRAP_ENV]
        else:
            self.log("starting a Kafka broker (set PYSTATEFUN_KAFKA_BOOTSTRAP to use a running one)")
            self.cluster = KafkaCluster(1, self.workdir / "kafka", keep=True)
            self.cluster.start()
            self.bootstrap = self.cluster.bootstrap_servers
        self.verification_topic = f"{self.run_id}-verification"
        self.confirmation_topic = f"{self.run_id}-confirmation"
        self.discard_topic = f"{self.run_id}-discard"
        self.commands_topic = f"{self.run_id}-commands" if a.ingress == "kafka" else None
        create_topics(self.bootstrap, *filter(None, [self.verification_topic, self.confirmation_topic, self.discard_topic,
                                                    self.commands_topic]),
                      partitions=4)
        function_url = None
        if not self.form.embedded:
            self.server = FunctionServer(self.form, self.workdir / f"function-{a.function}.log")
            self.log(f"starting function server {a.function}: {' '.join(self.form.command(self.server.port))}")
            self.server.start()
            self.proxy = FaultProxy(lambda: self.server.port, a.proxy_503, a.proxy_delay, PROXY_DELAY,
                                    self.seed).start()
            function_url = f"http://127.0.0.1:{self.proxy.port}/statefun"
        module = self.workdir / "module.yaml"
        module.write_text(module_yaml(form=self.form, function_url=function_url, bootstrap=self.bootstrap,
                                      discard_topic=self.discard_topic, verification_topic=self.verification_topic,
                                      ingress=a.ingress, commands_topic=self.commands_topic,
                                      group=f"{self.run_id}-ingress", playground=a.ingress == "http" or a.backend == "embedded",
                                      playground_egress=a.backend == "embedded"))
        if a.backend == "embedded":
            self.backend = EmbeddedBackend(module, self.workdir)
        else:
            self.backend = KafkaBackend(module, self.workdir, self.bootstrap, self.run_id, a.workers, a.partitions)
        self.log(f"starting the {a.backend} backend (work dir {self.workdir})")
        self.backend.start()
        self.verifier = Verifier(self.bootstrap, self.verification_topic, self.confirmation_topic, self.discard_topic,
                                 a.instances, f"{self.run_id}-verifier").start()
        if a.ingress == "http":
            self.http = HttpIngress(self.backend.ingress_port_list, self.run_id)
        else:
            self.kafka_ingress = KafkaIngress(self.bootstrap, self.commands_topic)

    # --- faults ------------------------------------------------------------------------------------------

    def _kill_runtime(self) -> str:
        self.counts["runtime_kills"] += 1
        return self.backend.kill_and_restart(self.rng)

    def _kill_function(self) -> str:
        self.counts["function_kills"] += 1
        return self.server.kill_and_restart(self.rng)

    def _restart_broker(self) -> str:
        index = self.rng.randrange(len(self.cluster.nodes))
        self.cluster.stop_node(index)
        time.sleep(self.rng.uniform(1, 5))
        self.cluster.start_node(index)
        self.counts["broker_restarts"] += 1
        return f"broker {index} stopped and started again"

    def schedules(self) -> list[KillSchedule]:
        a = self.args
        out = [KillSchedule("runtime kill", a.kills, self.rng, self._kill_runtime)]
        if self.server:
            out.append(KillSchedule("function server kill", a.function_kills, self.rng, self._kill_function))
        if a.broker_restarts:
            out.append(KillSchedule("broker restart", a.broker_restarts, self.rng, self._restart_broker))
        return out

    def _revive(self) -> None:
        """A process that exited without being killed is a finding: logged, counted, started again."""
        if self.backend.name == "embedded":
            if not self.backend.alive():
                self.counts["process_exits"] += 1
                self.log(f"!! the runtime exited by itself (code {self.backend.runtime.process.returncode}); "
                         "see runtime.log; starting it again")
                self.backend.start()
        else:
            for index, worker in enumerate(self.backend.workers):
                if not worker.alive():
                    self.counts["process_exits"] += 1
                    self.log(f"!! worker {index} exited by itself (code {worker.process.returncode}); see "
                             f"{worker.log.name}; starting it again")
                    worker.start()
        if self.server and (self.server.process.poll() is not None):
            self.counts["process_exits"] += 1
            self.log(f"!! the function server exited by itself (code {self.server.process.returncode}); restarting")
            self.server.start()

    # --- phases ------------------------------------------------------------------------------------------

    def faults_line(self) -> str:
        proxy = self.proxy.counts if self.proxy else {}
        return (f"runtime_kills={self.counts['runtime_kills']} function_kills={self.counts['function_kills']} "
                f"proxy_503={proxy.get('503', 0)} proxy_delays={proxy.get('delays', 0)} "
                f"broker_restarts={self.counts['broker_restarts']}")

    def progress(self, phase: str) -> None:
        ingress = self.http.counts if self.http else self.kafka_ingress.counts
        self.log(f"{phase}: accepted {self.tracker.accepted}/{self.args.messages} "
                 f"(ingress retries {ingress.get('retries', 0)}) | {self.faults_line()} | "
                 f"verified {self.args.instances - len(self.verifier.unverified())}/{self.args.instances} "
                 f"confirmed {self.args.instances - len(self.verifier.unconfirmed())}/{self.args.instances}"
                 + (f" | discard records still off for {len(off)} instances" if (off := self.verifier.egress_off())
                    and self.verifier.expected_egress is not None else ""))

    def send_phase(self) -> None:
        a = self.args
        params = Parameters(numberOfFunctionInstances=a.instances, messageCount=a.messages, commandDepth=a.command_depth,
                            maxCommandsPerDepth=a.max_commands_per_depth, randomGeneratorSeed=self.seed)
        generator = CommandGenerator(params, self.discard_topic)
        lock = threading.Lock()
        pace = paced(a.rate)
        errors: list[BaseException] = []

        def next_command():
            with lock:
                command = next(generator, None)
                if (command is not None and len(self.uncounted) < a.uncounted
                        and any(c["op"] == "increment" for c in command.commands)):
                    self.uncounted.add(command.index)   # --uncounted: sent, but not counted
                return command

        def accepted(command) -> None:
            if command.index not in self.uncounted:
                self.tracker.accepted_message(command)

        def http_sender() -> None:
            try:
                while not self.stop_event.is_set() and (command := next_command()) is not None:
                    pace()
                    self.http.send(command, f"{self.run_id}-{command.index}", self.stop_event, accepted)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        def kafka_sender() -> None:
            try:
                while not self.stop_event.is_set() and (command := next_command()) is not None:
                    pace()
                    self.kafka_ingress.send(command, accepted)
                while not self.stop_event.is_set() and self.kafka_ingress.flush(1) > 0:
                    pass
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=http_sender, daemon=True) for _ in range(a.concurrency)] if self.http \
            else [threading.Thread(target=kafka_sender, daemon=True)]
        for thread in threads:
            thread.start()
        schedules = self.schedules()
        last = time.monotonic()
        while any(thread.is_alive() for thread in threads):
            time.sleep(0.1)
            if errors:
                raise errors[0]
            if self.kafka_ingress and self.kafka_ingress.failure:
                raise HarnessError(self.kafka_ingress.failure)
            self.verifier.check()
            for schedule in schedules:
                schedule.poll(self.tracker.accepted / a.messages, self.log)
            self._revive()
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                self.progress("sending")
        if errors:
            raise errors[0]
        for schedule in schedules:  # points past the last message (a slow tail) still run
            schedule.poll(1.0, self.log)
        self.progress("sent")
        ingress = self.http.counts if self.http else self.kafka_ingress.counts
        self.log(f"ingress: {dict(ingress)}")

    def verify_phase(self) -> None:
        a = self.args
        self.verifier.set_expected_egress(self.tracker.expected_egress())
        deadline = time.monotonic() + a.timeout
        rounds = [0]
        errors: list[BaseException] = []

        def pending() -> tuple[list[int], str]:
            """Instances to ask, and the topic: first until all are verified, then the confirmation round."""
            unverified = self.verifier.unverified()
            if unverified:
                return unverified, self.verification_topic
            return self.verifier.unconfirmed(), self.confirmation_topic

        def send_round() -> None:
            rounds[0] += 1
            targets, topic = pending()
            commands = [verify_command(i, self.tracker.expected(i), topic) for i in targets]
            if self.http:
                with ThreadPoolExecutor(a.concurrency) as pool:
                    list(pool.map(lambda c: self.http.send(c, f"{self.run_id}-verify-{rounds[0]}-{c.target}",
                                                           self.stop_event), commands))
            else:
                for command in commands:
                    self.kafka_ingress.send(command, lambda _c: None)
                self.kafka_ingress.flush(30)

        def verify_loop() -> None:
            try:
                while not self.stop_event.is_set() and (pending()[0] or self.verifier.egress_off()):
                    started = time.monotonic()
                    if pending()[0]:
                        send_round()
                    self.stop_event.wait(max(0.0, 2.0 - (time.monotonic() - started)))
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        thread = threading.Thread(target=verify_loop, daemon=True)
        thread.start()
        last = time.monotonic()
        while thread.is_alive():
            time.sleep(0.2)
            if errors:
                raise errors[0]
            self.verifier.check()
            self._revive()
            if time.monotonic() > deadline:
                off = {i: self.verifier.last.get(i, (self.tracker.expected(i), None))
                       for i in self.verifier.unverified() or self.verifier.unconfirmed()}
                details = ", ".join(f"{i}: expected {e} actual {act}" for i, (e, act) in list(off.items())[:40])
                egress = self.verifier.egress_off()
                raise NotVerified(f"timeout after {a.timeout:.0f}s: {len(off)} instances not verified or confirmed "
                                  f"(instance: last expected/actual) {details or '-'}; discard records off "
                                  f"(instance: expected, seen) {dict(list(egress.items())[:20]) or '-'}; "
                                  f"parked addresses: {self.backend.parked()}")
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                self.progress(f"verifying (round {rounds[0]})")
        if errors:
            raise errors[0]
        self.verifier.check()

    def teardown(self) -> None:
        self.stop_event.set()
        for step in (lambda: self.verifier and self.verifier.stop(),
                     lambda: self.http and self.http.close(),
                     lambda: self.kafka_ingress and self.kafka_ingress.close(),
                     lambda: self.backend and self.backend.stop(),
                     lambda: self.server and self.server.stop(),
                     lambda: self.proxy and self.proxy.stop(),
                     lambda: self.cluster and self.cluster.stop()):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - stop everything else anyway
                self.log(f"(teardown: {e!r})")

    def summary(self, verdict: str, elapsed: float) -> str:
        a = self.args
        verified = a.instances - len(self.verifier.unconfirmed()) if self.verifier else 0
        return (f"SMOKE {verdict} backend={a.backend} function={a.function} ingress={a.ingress} "
                f"instances={a.instances} messages={a.messages} {self.faults_line()} "
                f"process_exits={self.counts['process_exits']} seed={self.seed} "
                f"verified={verified}/{a.instances} in {elapsed:.0f}s")

    def run(self) -> int:
        started = time.monotonic()
        a = self.args
        self.log(f"smoke run {self.run_id}: backend={a.backend} function={a.function} ingress={a.ingress} "
                 f"instances={a.instances} messages={a.messages} kills={a.kills} function_kills={a.function_kills} "
                 f"proxy_503={a.proxy_503} proxy_delay={a.proxy_delay} broker_restarts={a.broker_restarts} "
                 f"seed={self.seed}")
        failure = None
        try:
            self.setup()
            self.send_phase()
            self.verify_phase()
        except SetupError as e:
            failure = f"setup: {e}"
        except (OverCounted, NotVerified, HarnessError) as e:
            failure = str(e)
        except KeyboardInterrupt:
            failure = "interrupted"
        except Exception as e:  # noqa: BLE001 - a harness error is a failure too, with its traceback kept
            import traceback
            failure = f"error: {e!r}"
            (self.workdir / "traceback.txt").write_text(traceback.format_exc())
        finally:
            self.teardown()
        elapsed = time.monotonic() - started
        if failure is None:
            line = self.summary("PASS", elapsed)
            self.log(line)
            if self.counts["process_exits"]:
                self.log(f"work dir kept, as a process exited by itself: {self.workdir}")
            elif not a.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)
            print(line, flush=True)
            return 0
        self.log(f"FAILED: {failure}")
        self.log(f"work dir kept: {self.workdir} (module.yaml, data dir, logs of every process, smoke.log)")
        self.log(f"reproduce: {repro_command(a, self.seed)}")
        line = self.summary("FAIL", elapsed)
        self.log(line)
        return 1


class SetupError(RuntimeError):
    pass


class NotVerified(AssertionError):
    pass


class HarnessError(RuntimeError):
    pass


MATRIX_BACKENDS = ("embedded", "kafka")


def matrix(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="scripts/smoke matrix", description="Every backend x function form, one "
                                "after the other; a form whose serve script is missing is skipped.")
    p.add_argument("--backends", default=",".join(MATRIX_BACKENDS))
    p.add_argument("--functions", default=",".join(FORMS))
    p.add_argument("--instances", type=int, default=128)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--broker-restarts", type=int, default=0, help="on the Kafka backend")
    p.add_argument("--seed", type=int)
    args, rest = p.parse_known_args(argv)
    import subprocess
    lines, failed = [], 0
    for backend in args.backends.split(","):
        for function in args.functions.split(","):
            unavailable = FunctionForm(function).available()
            if unavailable:
                lines.append(f"SMOKE SKIP backend={backend} function={function}: {unavailable}")
                print(lines[-1], flush=True)
                continue
            command = [sys.executable, "-m", "tests.smoke", "--backend", backend, "--function", function,
                       "--instances", str(args.instances), "--messages", str(args.messages),
                       "--kills", str(args.kills), *rest]
            if backend == "kafka" and args.broker_restarts:
                command += ["--broker-restarts", str(args.broker_restarts)]
            if args.seed is not None:
                command += ["--seed", str(args.seed)]
            print(f"=== {' '.join(command[1:])}", flush=True)
            process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            summary = []
            for line in process.stdout:
                print(line, end="", flush=True)
                if line.startswith("SMOKE "):
                    summary.append(line.rstrip("\n"))
            process.wait()
            lines.append(summary[-1] if summary else f"SMOKE FAIL backend={backend} function={function}: "
                         f"exit {process.returncode} without a summary")
            failed += process.returncode != 0
    print("=== matrix summary", flush=True)
    for line in lines:
        print(line, flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["matrix"]:
        return matrix(argv[1:])
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    return Smoke(parser().parse_args(argv)).run()
