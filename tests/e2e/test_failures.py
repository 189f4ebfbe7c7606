"""Failure isolation through the real ingress, egress and admin API: a poison message parks one address
while everything else goes on; an operator resumes it after the fix, or skips the message."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pystatefun import StringType

from .processes import Runtime, request

APP = Path(__file__).parent / "apps" / "counter"
STRING = "io.statefun.types/string"


def send(runtime: Runtime, id: str, text: str) -> int:
    return runtime.send(f"/crash/fragile/{id}", STRING, StringType.serializer().serialize(text)).status


def admin(runtime: Runtime, method: str, path: str):
    reply = request(runtime.admin_port, method, path)
    return reply.status, json.loads(reply.body)


def drain(runtime: Runtime, topic: str) -> list[dict]:
    records = []
    while (reply := runtime.take(topic, wait=2)).status == 200:
        records.append(json.loads(reply.body))
    return records


def test_a_poison_message_parks_one_address_the_rest_completes_and_resume_after_the_fix(tmp_path):
    fixed = tmp_path / "fixed"
    runtime = Runtime(APP / "module.yaml", tmp_path / "data", env={"FRAGILE_FIXED": str(fixed)}).start()
    try:
        assert send(runtime, "p", "poison") == 202
        assert send(runtime, "p", "after the poison") == 202  # waits behind it, durably
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda n: send(runtime, f"other-{n % 10}", f"m{n}"), range(1000)))
        assert statuses == [202] * 1000
        records = drain(runtime, "fragile")
        assert len(records) == 1000 and all(r["key"].startswith("other-") for r in records)

        status, parked = admin(runtime, "GET", "/parked")
        assert status == 200
        assert parked == [{"address": "crash/fragile/p", "reason": parked[0]["reason"], "waiting_messages": 2}]
        reason = parked[0]["reason"]
        assert reason.startswith("crash/fragile/p raised RuntimeError: cannot digest poison\n")
        # where it was raised: the function's frame, its file, line and source, in /parked and in the log
        assert 'counter.py", line ' in reason and ", in fragile" in reason
        assert 'raise RuntimeError("cannot digest poison")' in reason
        assert 'raise RuntimeError("cannot digest poison")' in runtime.log.read_text()
        assert admin(runtime, "GET", "/health")[1]["parked_addresses"] == 1

        runtime.kill()  # parked survives a crash
        runtime.start()
        assert admin(runtime, "GET", "/parked")[1][0]["address"] == "crash/fragile/p"

        fixed.touch()  # the fix is deployed
        assert admin(runtime, "POST", "/parked/crash/fragile/p/resume") == (
            200, {"address": "crash/fragile/p", "resumed": True, "skipped": False})
        assert [r["message"] for r in drain(runtime, "fragile")] == ["poison", "after the poison"]
        assert admin(runtime, "GET", "/parked") == (200, [])
        assert admin(runtime, "POST", "/parked/crash/fragile/p/resume")[0] == 404
    finally:
        runtime.stop()


def test_skipping_the_poison_message_records_it_as_a_dead_letter(tmp_path):
    runtime = Runtime(APP / "module.yaml", tmp_path / "data").start()
    try:
        assert send(runtime, "q", "poison") == 202
        assert send(runtime, "q", "next") == 202
        for _ in range(100):
            if admin(runtime, "GET", "/parked")[1]:
                break
            runtime.take("fragile", wait=0.05)
        assert admin(runtime, "POST", "/parked/crash/fragile/q/skip")[1]["skipped"] is True
        assert [r["message"] for r in drain(runtime, "fragile")] == ["next"]
        status, letters = admin(runtime, "GET", "/dead-letters")
        assert status == 200 and len(letters) == 1
        letter = letters[0]
        assert letter["target"] == "crash/fragile/q" and letter["typename"] == STRING
        assert "skipped by an operator" in letter["reason"] and "cannot digest poison" in letter["reason"]
        assert admin(runtime, "GET", f"/dead-letters?after={letter['seq']}") == (200, [])
        assert admin(runtime, "GET", "/dead-letters?limit=0")[0] == 400
        assert admin(runtime, "POST", "/parked/crash/fragile/q/explode")[0] == 404
    finally:
        runtime.stop()
