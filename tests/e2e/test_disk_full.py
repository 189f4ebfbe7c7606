"""A full disk is a message, not a crash (issue 19): the runtime stays up, refuses new messages with 507
and a reason that says the disk is full, and goes on by itself once there is space, with nothing
acknowledged lost and nothing applied twice.

The data dir lives on a small tmpfs that the test mounts (root, as in CI); elsewhere it is skipped.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path

import pytest

from pystatefun import StringType

from support.disks import fill, tmpfs

from .processes import Runtime, request

APP = Path(__file__).parent / "apps" / "counter" / "module.yaml"
DISK_BYTES = 16 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path):
    with tmpfs(tmp_path / "disk", f"size={DISK_BYTES}", "filling a small tmpfs") as disk:
        yield disk


def _send(runtime: Runtime, key: str, message: str) -> tuple[int, str]:
    body = StringType.serializer().serialize(message)
    reply = runtime.send(f"/crash/counter/{key}", "io.statefun.types/string", body, timeout=120)
    return reply.status, reply.body.decode(errors="replace")


def _state(runtime: Runtime, address: str) -> dict:
    return json.loads(request(runtime.admin_port, "GET", f"/state/{address}").body)["state"]


def test_a_full_disk_refuses_new_messages_and_the_runtime_goes_on_once_there_is_space(small_disk: Path):
    runtime = Runtime(APP, small_disk / "data").start()
    try:
        accepted = []  # (key, message) of every 202
        for n in range(20):
            status, _ = _send(runtime, f"k{n % 4}", f"before-{n}")
            assert status == 202
            accepted.append((f"k{n % 4}", f"before-{n}"))

        filler = fill(small_disk)
        # messages sent now: the first ones may be taken into the epoch that cannot commit (they wait for
        # their answer), then the ingress refuses; none of them may get a 202 before space returns
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            waiting = []
            refused = None
            deadline = time.monotonic() + 30
            n = 0
            while refused is None and time.monotonic() < deadline:
                key, message = f"k{n % 4}", f"during-{n}"
                future = pool.submit(_send, runtime, key, message)
                try:
                    status, body = future.result(timeout=0.5)
                except concurrent.futures.TimeoutError:
                    waiting.append((key, message, future))  # taken in, waiting for its commit
                else:
                    assert status == 507, f"a message was answered {status} while the disk is full: {body}"
                    refused = body
                n += 1
            assert refused is not None, "the ingress never refused while the disk was full"
            assert "full" in refused and str(small_disk) in refused, refused
            health = request(runtime.admin_port, "GET", "/health", timeout=5)
            assert health.status == 200 and json.loads(health.body)["status"] == "unavailable", health.body
            assert runtime.process.poll() is None, "the runtime stopped when its disk filled"

            filler.unlink()
            # the messages that were waiting are committed now, and acknowledged
            for key, message, future in waiting:
                status, body = future.result(timeout=60)
                assert status == 202, body
                accepted.append((key, message))

        # and new messages are accepted again, without a restart
        deadline = time.monotonic() + 30
        while True:
            status, body = _send(runtime, "k0", "after")
            if status == 202:
                accepted.append(("k0", "after"))
                break
            assert status == 507 and time.monotonic() < deadline, body
            time.sleep(0.2)

        # exactly once: every acknowledged message counted once at its address and once in the total
        deadline = time.monotonic() + 30
        expected = {key: sum(1 for k, _ in accepted if k == key) for key in {k for k, _ in accepted}}
        while True:
            counts = {key: _state(runtime, f"crash/counter/{key}").get("count", {}).get("value") for key in expected}
            total = _state(runtime, "crash/total/all").get("total", {}).get("value")
            if counts == expected and total == len(accepted):
                break
            assert time.monotonic() < deadline, f"counts {counts}, total {total}; expected {expected}, {len(accepted)}"
            time.sleep(0.2)
    finally:
        runtime.stop()
