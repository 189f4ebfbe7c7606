"""kill -9 of the runtime under load, at random moments; clients resubmit with idempotency keys until
accepted. Afterwards every key's counter equals the number of distinct accepted messages, and the egress
holds each result exactly once -- for state updates, for messages between functions and for delayed
messages (apps/counter)."""

import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

from pystatefun import StringType

from .processes import Runtime

APP = Path(__file__).parent / "apps" / "counter"
KEYS = 8
MESSAGES = 400
KILLS = 5
CLIENTS = 4


def test_kill_minus_nine_under_load_loses_nothing_and_applies_nothing_twice(tmp_path):
    runtime = Runtime(APP / "module.yaml", tmp_path / "data").start()
    rng = random.Random(7)
    accepted: dict[str, str] = {}  # message id -> key
    lock = threading.Lock()
    done = threading.Event()

    def client(worker: int) -> None:
        for n in range(worker, MESSAGES, CLIENTS):
            message_id = f"m{n}"
            key = f"k{n % KEYS}"
            body = StringType.serializer().serialize(message_id)
            while True:  # resubmit the same idempotency key until the runtime says it has it
                try:
                    reply = runtime.send(f"/crash/counter/{key}", "io.statefun.types/string", body, key=message_id, timeout=5)
                    if reply.status == 202:
                        with lock:
                            accepted[message_id] = key
                        break
                except OSError:
                    pass
                time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.2, 0.8))
        runtime.kill()
        time.sleep(rng.uniform(0.0, 0.3))
        runtime.start()
    for thread in threads:
        thread.join(120)
    assert len(accepted) == MESSAGES

    records = {topic: drain(runtime, topic) for topic in ("counts", "totals", "late")}
    runtime.stop()

    expected = Counter(accepted.values())
    for topic, topic_records in records.items():
        seen = Counter(r["message"] for r in topic_records)
        assert all(n == 1 for n in seen.values()), f"{topic}: a message was applied twice"
        assert set(seen) == set(accepted), f"{topic}: a message was lost"
    for key, total in expected.items():
        counts = sorted(r["count"] for r in records["counts"] if r["key"] == key)
        assert counts == list(range(1, total + 1)), f"{key}: {counts}"
    assert sorted(r["total"] for r in records["totals"]) == list(range(1, MESSAGES + 1))
    assert all(r["sender"] == r["key"] == accepted[r["message"]] for r in records["late"])


def drain(runtime: Runtime, topic: str) -> list[dict]:
    """Every record of ``topic``; the delayed messages may still be due, so wait a little for more."""
    records = []
    while True:
        reply = runtime.take(topic, wait=2)
        if reply.status == 404:
            return records
        records.append(json.loads(reply.body))
