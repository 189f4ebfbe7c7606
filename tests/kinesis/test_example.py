"""examples/kinesis as docs/kinesis.md runs it: its streams script, `pystatefun run` on its module, against
each emulator, the commands as written there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from e2e.processes import free_port, terminate, wait_for_port

from .harness import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kinesis"


def test_the_click_counter_example_runs_as_the_docs_say(tmp_path, emulator):
    env = {**os.environ, "KINESIS_ENDPOINT": emulator.endpoint}

    def streams(*arguments: str) -> str:
        done = subprocess.run([sys.executable, str(EXAMPLE / "streams.py"), *arguments], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "created clicks and click-counts" in streams("create")
    admin = free_port()
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        runtime = subprocess.Popen([sys.executable, "-m", "pystatefun.cli", "run", str(EXAMPLE / "module.yaml"),
                                    "--data-dir", str(tmp_path / "data"), "--admin-port", str(admin)],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(admin, runtime)
        for user, page in (("alice", "home"), ("alice", "cart"), ("bob", "home")):
            streams("click", user, page)

        def counted() -> bool:
            return len(streams("counts").splitlines()) >= 3

        wait_until(counted, "three counts on click-counts")
        counts = [json.loads(line) for line in streams("counts").splitlines()]
        assert sorted(counts, key=lambda c: (c["user"], c["clicks"])) == [
            {"user": "alice", "clicks": 1, "last_page": "home"},
            {"user": "alice", "clicks": 2, "last_page": "cart"},
            {"user": "bob", "clicks": 1, "last_page": "home"},
        ]
    finally:
        terminate(runtime, 15)
    assert "kinesis ingress example/clicks: streams clicks" in log.read_text()
