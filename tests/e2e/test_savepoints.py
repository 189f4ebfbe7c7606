"""Savepoints of the embedded backend, through the admin API and `pystatefun run --from-savepoint`: an
application moved under load with stop-with-savepoint loses nothing and applies nothing twice (state,
messages between functions, delayed messages, egress records, idempotency keys), an online savepoint is
restored field by field into another partition count, a savepoint interrupted by kill -9 never appears
half written, and the refusals say what to do."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from pystatefun import StringType
from pystatefun.backends.embedded import SQLiteStore
from pystatefun.savepoints.format import SavepointReader
from pystatefun.wire.request_reply_pb2 import TypedValue

import pytest

from .processes import Runtime, request
from .test_crash import drain

APP = Path(__file__).parent / "apps" / "counter"
KEYS = 8
MESSAGES = 300


@pytest.fixture
def runtimes():
    """Every runtime a test makes, killed at its end whatever happened (one that stopped is left alone)."""
    made: list[Runtime] = []

    def make(*args, **kwargs) -> Runtime:
        made.append(Runtime(*args, **kwargs))
        return made[-1]

    yield make
    for runtime in made:
        runtime.kill()


def savepoint(runtime: Runtime, path: Path | str, stop: bool = False):
    return request(runtime.admin_port, "POST", "/savepoints", json.dumps({"path": str(path), "stop": stop}).encode(),
                   {"Content-Type": "application/json"}, timeout=120)


def test_stop_with_savepoint_moves_an_application_under_load_exactly_once(tmp_path, runtimes):
    old = runtimes(APP / "module.yaml", tmp_path / "old", args=("--log-level", "info")).start()
    new = runtimes(APP / "module.yaml", tmp_path / "new", args=("--log-level", "warning", "--from-savepoint",
                                                                str(tmp_path / "move.savepoint"), "--partitions", "3"))
    current = [old]
    accepted: dict[str, str] = {}
    lock = threading.Lock()

    deadline = time.monotonic() + 180  # a failed test must not leave its clients resubmitting forever

    def client(worker: int) -> None:
        for n in range(worker, MESSAGES, 4):
            message_id, key = f"m{n}", f"k{n % KEYS}"
            body = StringType.serializer().serialize(message_id)
            while time.monotonic() < deadline:  # resubmit with the same key until accepted, by the old or the new one
                try:
                    reply = current[0].send(f"/crash/counter/{key}", "io.statefun.types/string", body,
                                            key=message_id, timeout=5)
                    if reply.status == 202:
                        with lock:
                            accepted[message_id] = key
                        break
                except OSError:
                    pass
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(4)]
    for thread in threads:
        thread.start()
    while len(accepted) < MESSAGES // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    # records read from the old application before it stops; the rest move with the savepoint
    early = {topic: [json.loads(old.take(topic).body) for _ in range(5)] for topic in ("counts", "totals")}
    answer = savepoint(old, tmp_path / "move.savepoint", stop=True)
    assert answer.status == 201, answer.body
    manifest = json.loads(answer.body)
    assert manifest["mode"] == "stop" and manifest["source_backend"] == "embedded" and manifest["partitions"] == 8
    assert old.process.wait(30) == 0  # it stays stopped
    assert "stopped with a savepoint at" in old.log.read_text()

    new.start()
    current[0] = new
    for thread in threads:
        thread.join(120)
    assert len(accepted) == MESSAGES
    records = {topic: early.get(topic, []) + drain(new, topic) for topic in ("counts", "totals", "late")}
    assert "restored" in new.log.read_text()
    # three partitions now: the data dir says so
    store = sqlite3.connect(tmp_path / "new" / "pystatefun.db")
    assert dict(store.execute("SELECT key, value FROM meta"))["partitions"] == "3"
    store.close()
    new.stop()

    for topic, topic_records in records.items():
        seen = Counter(r["message"] for r in topic_records)
        assert all(n == 1 for n in seen.values()), f"{topic}: a message was applied twice"
        assert set(seen) == set(accepted), f"{topic}: a message was lost"
    for key, total in Counter(accepted.values()).items():
        counts = sorted(r["count"] for r in records["counts"] if r["key"] == key)
        assert counts == list(range(1, total + 1)), f"{key}: {counts}"
    assert sorted(r["total"] for r in records["totals"]) == list(range(1, MESSAGES + 1))


def test_an_online_savepoint_restores_field_by_field_into_another_partition_count(tmp_path, runtimes):
    runtime = runtimes(APP / "module.yaml", tmp_path / "data").start()
    for n in range(40):
        assert runtime.send(f"/crash/counter/k{n % 5}", "io.statefun.types/string",
                            StringType.serializer().serialize(f"m{n}"), key=f"m{n}").status == 202
    answer = savepoint(runtime, tmp_path / "online.savepoint")
    assert answer.status == 201, answer.body
    assert json.loads(answer.body)["mode"] == "online"
    assert runtime.send("/crash/counter/k0", "io.statefun.types/string",
                        StringType.serializer().serialize("after")).status == 202  # it goes on
    runtime.stop()

    with SavepointReader(tmp_path / "online.savepoint") as reader:
        reader.verify()
        saved = {(r.typename, r.id, r.name): r for r in reader.rows("state")}
        pending = reader.manifest.counts["messages"] + reader.manifest.counts["timers"]
        idempotency = {r.key for r in reader.rows("idempotency")}
    assert idempotency == {f"io.statefun.playground/ingress:m{n}" for n in range(40)}
    assert saved[("crash/total", "all", "total")] is not None

    restored = runtimes(APP / "module.yaml", tmp_path / "restored",
                       args=("--log-level", "warning", "--from-savepoint", str(tmp_path / "online.savepoint"),
                             "--partitions", "5"))
    # before it starts: the restored data dir holds exactly the savepoint's state, each address at its
    # partition for 5 partitions
    from pystatefun.savepoints import embedded

    embedded.restore(str(tmp_path / "online.savepoint"), tmp_path / "restored", 5)
    store = SQLiteStore(tmp_path / "restored", 5)
    rows = {(t, i, n): (p, v, e) for t, i, n, p, v, e in store.db.execute("SELECT * FROM state")}
    store.close()
    from pystatefun.runtime.envelope import partition_of

    assert set(rows) == set(saved)
    for key, (partition, value, expire_at) in rows.items():
        assert partition == partition_of(key[1], 5)
        assert (value, expire_at) == (saved[key].value, saved[key].expire_at)
    restored.start()  # the same --from-savepoint again: it continues the restored data dir
    assert "restored from" in restored.log.read_text() and "already" in restored.log.read_text()
    # a retry of a request the old application accepted is answered from the idempotency record
    again = restored.send("/crash/counter/k0", "io.statefun.types/string", StringType.serializer().serialize("m0"),
                          key="m0")
    assert again.status == 202
    # the savepoint's pending messages run in the restored application: every one of the 40 is counted
    # once (the 41st, sent after the savepoint, went to the old application only)
    deadline = time.monotonic() + 30
    while True:
        state = json.loads(request(restored.admin_port, "GET", "/state/crash/total/all").body)
        if state["state"]["total"]["value"] == 40 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert state["state"]["total"]["value"] == 40, (state, pending)
    restored.stop()


def test_a_savepoint_killed_midway_never_appears_and_refusals_say_what_to_do(tmp_path, runtimes):
    # an application with enough state that a savepoint takes a while
    store = SQLiteStore(tmp_path / "data", 8)
    value = TypedValue(typename="io.statefun.types/int", has_value=True, value=b"\x08\x01").SerializeToString()
    store.db.execute("BEGIN")
    store.db.executemany("INSERT INTO state VALUES (?, ?, ?, ?, ?, NULL)",
                         ((f"crash/counter", f"k{n}", "count", n % 8, value + bytes(100)) for n in range(300_000)))
    store.db.execute("COMMIT")
    store.close()
    runtime = runtimes(APP / "module.yaml", tmp_path / "data").start()
    target = tmp_path / "big.savepoint"
    asking = threading.Thread(target=lambda: _swallow(lambda: savepoint(runtime, target)))
    asking.start()
    partial = tmp_path / ".big.savepoint.partial"
    deadline = time.monotonic() + 30
    while not partial.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    runtime.kill()
    asking.join(30)
    assert not target.exists()  # never half written under its name

    # offline, while a runtime holds the data dir: refused, and it says what to do instead
    runtime.start()
    offline = subprocess.run([sys.executable, "-c", "import sys; from pystatefun.savepoints import embedded; "
                              "embedded.take_offline(__import__('pathlib').Path(sys.argv[1]), sys.argv[2])",
                              str(tmp_path / "data"), str(target)], capture_output=True, text=True)
    assert offline.returncode != 0 and "is in use by process" in offline.stderr and "--admin" in offline.stderr
    # the partial file of the killed attempt is replaced, and this one completes
    answer = savepoint(runtime, target)
    assert answer.status == 201, answer.body
    assert json.loads(answer.body)["counts"]["state"] == 300_000
    assert not partial.exists()
    again = savepoint(runtime, target)
    assert again.status == 409 and "exists already" in json.loads(again.body)["error"]
    bad = request(runtime.admin_port, "POST", "/savepoints", b"{}", {"Content-Type": "application/json"})
    assert bad.status == 400 and "path" in json.loads(bad.body)["error"]
    runtime.stop()

    # restoring into a data dir that holds an application
    refused = subprocess.run([sys.executable, "-m", "pystatefun.cli", "run", str(APP / "module.yaml"), "--data-dir",
                              str(tmp_path / "data"), "--from-savepoint", str(target)],
                             capture_output=True, text=True, env=runtime.env, timeout=60)
    assert refused.returncode == 1
    assert "already holds an application: restore into a new --data-dir" in refused.stderr
    with SavepointReader(target) as reader:
        reader.verify()


def _swallow(call) -> None:
    try:
        call()
    except OSError:
        pass  # the runtime was killed while it answered
