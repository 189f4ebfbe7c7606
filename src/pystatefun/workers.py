"""``pystatefun run --backend kafka --workers N``: N worker processes on this machine, kept running.

Each worker is ``pystatefun run`` with the same arguments and ``--workers 1``, told its index in
``PYSTATEFUN_WORKER_INDEX`` (its default worker id, and the offset of its HTTP ports). A worker that
stops by itself (a crash, a lost partition, a failed commit) is started again after a second; SIGINT or
SIGTERM is passed to every worker, which commits and hands its partitions over before exiting.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

log = logging.getLogger("pystatefun")

RESTART_DELAY_SECONDS = 1.0


def supervise(workers: int, argv: list[str]) -> int:
    stopping = False
    children: dict[int, subprocess.Popen] = {}

    def start(index: int) -> None:
        env = {**os.environ, "PYSTATEFUN_WORKER_INDEX": str(index)}
        children[index] = subprocess.Popen([sys.executable, "-m", "pystatefun.cli", *argv, "--workers", "1"], env=env)
        log.info("worker %d started (pid %d)", index, children[index].pid)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(workers):
        start(index)
    while True:
        if stopping:
            for child in children.values():
                child.wait()
            return 0
        for index, child in list(children.items()):
            code = child.poll()
            if code is not None and not stopping:
                log.warning("worker %d exited with %d; starting it again", index, code)
                time.sleep(RESTART_DELAY_SECONDS)
                if not stopping:
                    start(index)
        time.sleep(0.2)
