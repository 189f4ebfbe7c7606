"""Follows the three stories of docs/savepoints.md literally: their commands, in order, and the answers the
page documents.

The commands are read from the ```bash blocks under each story's heading, so an edit to the page that breaks
them fails here. They run one after the other as in a user's shell (bash, with the working directory and the
exported variables carried from one line to the next); a ``pystatefun run`` line runs in the background, as
in the user's other shell. What differs from that shell, each so that the test can run beside others:

- Ports: the modules read ``INGRESS_PORT`` and ``EGRESS_PORT``, ``--admin-port P`` is appended to every
  ``pystatefun run`` line, and ``localhost:8090`` and ``http://127.0.0.1:8081`` in the commands become the
  chosen ports (with ``--workers 2``, worker i serves on the ingress port + i and the admin port + i, as
  ``pystatefun run`` does with 8090 and 8081). The operations commands (``pystatefun state``) find the
  admin API through ``$PYSTATEFUN_ADMIN`` (and ``$PYSTATEFUN_INGRESS``), which they read.
- Paths: ``/tmp/...`` is under the test's tmp_path.
- Ctrl-C: the page stops a runtime with Ctrl-C before a line that needs it stopped (``rm -r``, ``savepoint
  create --backend kafka``, a new ``pystatefun run``); the test sends SIGTERM to the running ``pystatefun
  run`` there and waits for it to exit with 0. After a ``savepoint create ... --stop`` line the runtime must
  exit by itself, with 0.
- curl gets ``-sS --fail-with-body``, so that a refused request fails the test instead of passing silently.
- Kafka: ``export "$(scripts/kafka start)"`` is replaced by the broker the tests use (CI's ``scripts/kafka
  start``, whose address is ``$PYSTATEFUN_KAFKA_BOOTSTRAP``), and ``scripts/kafka topic/read`` find that
  cluster through ``$PYSTATEFUN_KAFKA_DIR`` (default ~/.cache/pystatefun/kafka-run, where CI starts it). A
  broker named by ``$PYSTATEFUN_KAFKA_BOOTSTRAP`` whose state file is not there skips the Kafka story (the
  scripts could not find it); with no broker given, the test starts a one-node cluster of its own.
- The Kafka application names get a random suffix (``--app greeter`` -> ``--app greeter-<hex>``), since the
  broker is shared. The topic ``greetings`` cannot be renamed (the greeter's code writes to it), so the test
  deletes it before the story: two runs of this test against one broker at the same time would clash on it.

Reads that the page shows right after an asynchronous request (``pystatefun state``, ``scripts/kafka read``)
are repeated for a few seconds until they show the documented answer, as a user who reads too early would
read again; the answer is then checked exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from typing import Callable, Iterator

import pytest

from e2e.processes import free_port
from support.kafka import BOOTSTRAP_ENV, DIR_ENV, KafkaCluster, KafkaError, _default_dir

REPO = pathlib.Path(__file__).resolve().parents[2]
PAGE = (REPO / "docs" / "savepoints.md").read_text()
BIN = REPO / ".venv" / "bin"
COMMAND_TIMEOUT = 120
READ_AGAIN_SECONDS = 15


# --- the page -------------------------------------------------------------------------------------------

def story(title: str) -> str:
    """The text of the section whose heading starts with ``title``."""
    sections = [s for s in re.split(r"^## ", PAGE, flags=re.MULTILINE) if s.startswith(title)]
    assert len(sections) == 1, f"docs/savepoints.md has {len(sections)} sections headed {title!r}"
    return sections[0]


def story_lines(title: str) -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", story(title), flags=re.DOTALL | re.MULTILINE)
    lines = [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert lines, f"no ```bash commands under {title!r}"
    return lines


def state_values(output: str) -> dict:
    """``pystatefun state``'s output (not a terminal: a tab-separated row per state) as {name: value}."""
    values = {}
    for row in output.splitlines():
        name, _typename, value, *_ = row.split("\t")
        values[name] = json.loads(value)
    return values


# --- a user's shell -------------------------------------------------------------------------------------

class Shell:
    """Runs a story's lines as a user's shell would (see the module docstring for what differs), and stops
    every process it started whatever happens (``close``)."""

    def __init__(self, tmp_path: pathlib.Path):
        self.tmp = tmp_path
        self.cwd = REPO
        self.ingress, self.egress, self.admin = (free_port(2) for _ in range(3))
        self.suffix = uuid.uuid4().hex[:8]
        self.env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", INGRESS_PORT=str(self.ingress),
                        EGRESS_PORT=str(self.egress), PYSTATEFUN_ADMIN=f"http://127.0.0.1:{self.admin}",
                        PYSTATEFUN_INGRESS=f"http://127.0.0.1:{self.ingress}",
                        PYSTATEFUN_EGRESS=f"http://127.0.0.1:{self.egress}")
        for inherited in ("PYTHONPATH", BOOTSTRAP_ENV, "PYSTATEFUN_BOOTSTRAP_SERVERS", "PYSTATEFUN_APP",
                          "PYSTATEFUN_ADMIN_TOKEN"):
            self.env.pop(inherited, None)
        self.runtime: subprocess.Popen | None = None
        self.runtime_log: pathlib.Path | None = None
        self.started: list[subprocess.Popen] = []
        self.transcript: list[str] = []
        self.apps: list[str] = []

    # what the story's lines become

    def rewrite(self, line: str) -> str:
        command = re.sub(r"(?<![\w./-])/tmp/", f"{self.tmp}/", line)
        command = command.replace("localhost:8090", f"127.0.0.1:{self.ingress}")
        command = command.replace("http://127.0.0.1:8081", f"http://127.0.0.1:{self.admin}")

        def unique_app(match: re.Match) -> str:
            self.apps.append(f"{match[1]}-{self.suffix}")
            return f"--app {match[1]}-{self.suffix}"

        command = re.sub(r"--app (\S+)", unique_app, command)
        if command.startswith("curl "):
            command = "curl -sS --fail-with-body " + command.removeprefix("curl ")
        if command.startswith("pystatefun run "):
            command += f" --admin-port {self.admin}"
        leftover = re.search(r"\b(8090|8091|8081)\b", command)
        assert leftover is None, f"a port of the page's that the test does not map ({leftover[0]}): {line}"
        return command

    def run(self, line: str) -> subprocess.CompletedProcess:
        """Runs one line of the page; a failing command fails the test with what ran so far."""
        if line.startswith("pystatefun run "):
            self.ctrl_c()  # a new runtime on the same data and ports: the previous one is stopped first
            return self.start_runtime(line)
        if line.startswith("rm -r") or re.match(r"pystatefun savepoint create .*--backend kafka", line):
            self.ctrl_c()
        command = self.rewrite(line)
        result = self.bash(command)
        self.transcript.append(f"$ {command}\n{result.stdout}{result.stderr}[exit {result.returncode}]")
        assert result.returncode == 0, self.report(f"`{line}` failed")
        if re.match(r"pystatefun savepoint create .*--stop\b", line):
            self.wait_for_exit(f"after `{line}` the runtime")
        return result

    def bash(self, command: str) -> subprocess.CompletedProcess:
        """``command`` in bash with the shell's working directory and variables, which it may change."""
        after = self.tmp / ".shell"
        after.mkdir(exist_ok=True)
        script = (f"{command}\n__status=$?\npwd > {after}/cwd\nenv -0 > {after}/env\nexit $__status\n")
        (after / "cwd").unlink(missing_ok=True)
        result = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                                timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
        if (after / "cwd").exists():
            self.cwd = pathlib.Path((after / "cwd").read_text().strip())
            variables = (after / "env").read_text().split("\0")
            self.env = dict(v.split("=", 1) for v in variables if "=" in v)
            for shells_own in ("_", "SHLVL", "PWD", "OLDPWD", "__status"):
                self.env.pop(shells_own, None)
        return result

    def export_kafka(self, line: str, bootstrap: str) -> None:
        """``export "$(scripts/kafka start)"``: the broker the tests use, started already."""
        assert line == 'export "$(scripts/kafka start)"', line
        self.env[BOOTSTRAP_ENV] = bootstrap
        self.transcript.append(f"$ {line}\n(the tests' broker: {BOOTSTRAP_ENV}={bootstrap})")

    # the runtime in the user's other shell

    def start_runtime(self, line: str) -> subprocess.CompletedProcess:
        command = self.rewrite(line)
        argv = shlex.split(command)
        workers = int(argv[argv.index("--workers") + 1]) if "--workers" in argv else 1
        self.runtime_log = self.tmp / f"run-{len(self.started) + 1}.log"
        with self.runtime_log.open("w") as log:
            # its own process group, so that the workers of --workers N can be killed with it at the end
            self.runtime = subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.started.append(self.runtime)
        self.transcript.append(f"$ {command} &  (output in {self.runtime_log})")
        deadline = time.monotonic() + 90
        for index in range(workers):
            while not self.healthy(self.admin + index):
                assert self.runtime.poll() is None, self.report(f"`{line}` exited with {self.runtime.returncode}")
                assert time.monotonic() < deadline, self.report(f"`{line}`: worker {index} not healthy in 90 s")
                time.sleep(0.1)
        return subprocess.CompletedProcess(argv, 0, "", "")

    @staticmethod
    def healthy(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                return answer.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def ctrl_c(self) -> None:
        """The user's Ctrl-C in the runtime's shell: SIGTERM, and it exits by itself with 0."""
        if self.runtime is None or self.runtime.poll() is not None:
            return
        self.transcript.append("(Ctrl-C: SIGTERM to the runtime)")
        self.runtime.send_signal(signal.SIGTERM)
        self.wait_for_exit("stopped with SIGTERM, the runtime")

    def wait_for_exit(self, what: str, timeout: float = 60) -> None:
        assert self.runtime is not None, f"{what}: no runtime runs"
        try:
            code = self.runtime.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(self.report(f"{what} did not exit within {timeout:.0f} s")) from None
        assert code == 0, self.report(f"{what} exited with {code}")

    def close(self) -> None:
        """Stops whatever still runs: SIGTERM, then SIGKILL to its process group after a timeout."""
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # and any worker left behind
            process.wait()

    # reading an answer

    def read_until(self, line: str, done: Callable[[str], bool]) -> str:
        """Runs ``line`` (a read) again until ``done(stdout)`` or READ_AGAIN_SECONDS pass; gives the last stdout."""
        deadline = time.monotonic() + READ_AGAIN_SECONDS
        while True:
            output = self.run(line).stdout
            if done(output) or time.monotonic() > deadline:
                return output
            time.sleep(0.3)

    def report(self, what: str) -> str:
        log = self.runtime_log.read_text()[-4000:] if self.runtime_log and self.runtime_log.exists() else ""
        return f"{what}\n--- the story so far:\n" + "\n".join(self.transcript) + f"\n--- the runtime's log:\n{log}"


@pytest.fixture
def shell(tmp_path) -> Iterator[Shell]:
    assert (BIN / "pystatefun").exists(), "the dev venv (.venv) is needed: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'"
    shell = Shell(tmp_path)
    try:
        yield shell
    finally:
        shell.close()


# --- Kafka ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kafka(tmp_path_factory) -> Iterator[tuple[pathlib.Path, str]]:
    """(the directory of the cluster's state file, for scripts/kafka; its bootstrap servers)."""
    bootstrap = os.environ.get(BOOTSTRAP_ENV)
    directory = _default_dir()  # $PYSTATEFUN_KAFKA_DIR, else where CI's `scripts/kafka start` keeps it
    if bootstrap or os.environ.get(DIR_ENV):
        try:
            cluster = KafkaCluster.attach(directory)
        except KafkaError:
            pytest.skip(f"the broker {bootstrap} has no scripts/kafka state file in {directory}, so the page's "
                        f"`scripts/kafka topic/read` cannot find it: set {DIR_ENV} to the --dir it was started with")
        if bootstrap and cluster.bootstrap_servers != bootstrap:
            pytest.skip(f"{directory} holds the cluster {cluster.bootstrap_servers}, not {BOOTSTRAP_ENV}={bootstrap}: "
                        f"set {DIR_ENV} to the --dir of the broker {bootstrap}")
        if not all(node.running() for node in cluster.nodes):
            pytest.skip(f"the Kafka cluster of {directory} is not running")
        yield directory, cluster.bootstrap_servers
        return
    # no broker given: one of our own, with a state file for scripts/kafka
    with KafkaCluster(nodes=1, workdir=tmp_path_factory.mktemp("kafka") / "cluster") as cluster:
        cluster.save_state()
        yield cluster.workdir, cluster.bootstrap_servers


def delete_topics(bootstrap: str, wanted: Callable[[str], bool]) -> None:
    """Deletes the topics ``wanted`` names and waits until they are gone."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=30).topics if wanted(t)]
    if not topics:
        return
    for future in admin.delete_topics(topics, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # deleted meanwhile
            future.result(30)
    deadline = time.monotonic() + 30
    while set(topics) & set(admin.list_topics(timeout=30).topics):
        assert time.monotonic() < deadline, f"topics {topics} not deleted in 30 s"
        time.sleep(0.2)


# --- the stories ----------------------------------------------------------------------------------------

def test_story_1_back_up_and_restore_the_shopping_cart(shell):
    title = "Story 1: back up and restore the shopping cart"
    lines = story_lines(title)
    cart, stock = "pystatefun state com.example/user-shopping-cart/alice", "pystatefun state com.example/stock/socks"
    assert lines[-2:] == [cart, stock], "the story no longer ends by showing alice's cart and the stock"
    assert "alice's cart and the stock are back" in story(title)
    stock_before = None
    answers = {}
    for line in lines:
        if line.startswith("rm -r"):
            # what the stock was before the data dir was lost (once the requests were processed)
            shell.read_until(cart, lambda out: state_values(out).get("basket") == {"items": {"socks": 2}})
            stock_before = state_values(shell.run(stock).stdout)
        if line == cart:
            answers[line] = shell.read_until(line, lambda out: "basket" in state_values(out))
        elif line == stock:
            answers[line] = shell.read_until(line, lambda out: state_values(out) == stock_before)
        else:
            answers[line] = shell.run(line).stdout
    inspect = next(line for line in lines if line.startswith("pystatefun savepoint inspect"))
    assert "user-shopping-cart" in answers[inspect] and "online" in answers[inspect], answers[inspect]
    assert state_values(answers[cart])["basket"]["items"] == {"socks": 2}, shell.report("alice's cart after the restore")
    assert stock_before is not None and "stock" in stock_before, stock_before
    assert state_values(answers[stock]) == stock_before, shell.report("the stock after the restore")


def test_story_2_move_the_greeter_to_kafka_then_to_16_partitions(shell, kafka):
    title = "Story 2: move the greeter"
    text, lines = " ".join(story(title).split()), story_lines(title)
    directory, bootstrap = kafka
    greetings = ["Welcome Bob", "Nice to see you again Bob", "Third time is a charm Bob"]
    assert "`state` shows `visits` 3" in text and ", ".join(f'"{g}"' for g in greetings) in text, \
        "the page's documented answers changed; update this test with them"
    bob, read = "pystatefun state example/person/Bob", "scripts/kafka read greetings"
    assert bob in lines and read in lines
    shell.env[DIR_ENV] = str(directory)
    delete_topics(bootstrap, lambda topic: topic == "greetings")  # a previous run's (see the module docstring)
    answers = {}
    try:
        for line in lines:
            if line.startswith("export \"$("):
                shell.export_kafka(line, bootstrap)
            elif line == bob:
                answers[line] = shell.read_until(line, lambda out: state_values(out).get("visits") == 3)
            elif line == read:
                answers[line] = shell.read_until(line, lambda out: len(out.splitlines()) >= len(greetings))
            else:
                answers[line] = shell.run(line).stdout
            if line.startswith("pystatefun savepoint create --backend kafka"):
                assert "kafka application" in answers[line] and "1 state values" in answers[line], answers[line]
        assert state_values(answers[bob]) == {"visits": 3}, shell.report("Bob's state on the Kafka application")
        assert answers[read].splitlines() == greetings, shell.report("the greetings topic")

        # the application restored into 16 partitions (the story's last line) has Bob's visits, and its
        # start delivered no greeting again
        assert shell.runtime is not None and shell.runtime.poll() is None and "--partitions 16" in lines[-1]
        assert state_values(shell.read_until(bob, lambda out: "visits" in state_values(out))) == {"visits": 3}
        assert shell.run(read).stdout.splitlines() == greetings, shell.report("the greetings topic after the move to 16")
    finally:
        shell.close()
        with contextlib.suppress(Exception):  # tidy the shared broker; a failure here hides nothing
            delete_topics(bootstrap, lambda topic: topic == "greetings" or topic.startswith(tuple(f"{app}." for app in shell.apps)))


def test_story_3_upgrade_a_states_type(shell):
    title = "Story 3: upgrade a state's type"
    lines = story_lines(title)
    answer = {"count": 7, "last": 2}
    assert f"The answer is `{json.dumps(answer)}`." in story(title), "the page's documented answer changed"
    assert "?wait=5" in lines[-1]
    answers = [shell.run(line).stdout for line in lines]
    assert shell.cwd == REPO, f"the story leaves the shell in {shell.cwd}"
    assert json.loads(answers[-1]) == answer, shell.report("the answer of version 2")
