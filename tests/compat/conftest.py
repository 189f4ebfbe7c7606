"""The official StateFun SDK as a session fixture: a worker process in the official SDK's virtualenv.

``official`` yields an ``OfficialWorker``: ``handle(request_bytes) -> bytes`` runs the official
``RequestReplyHandler`` over logic.py's functions (raising ``OfficialError`` when it raised), and
``type_ops(ops)`` runs type encode/decode operations with the official types (official_worker.py).

The virtualenv is made by scripts/official-sdk-venv. If it can not be made or the worker does not
start, every test that needs it fails: these tests are never skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from support.official import OFFICIAL_VERSION, official_python

from .official_worker import _HEADER, _REPLY_HEADER, KIND_HANDLE, KIND_TYPES, STATUS_OK

HERE = Path(__file__).resolve().parent
WORKER = HERE / "official_worker.py"


class OfficialError(Exception):
    """The official handler raised; ``error`` describes the exception (type, module, mro, message)."""

    def __init__(self, error: dict):
        self.error = error
        super().__init__(f"{error['type']}: {error['message']}")


class WorkerDied(RuntimeError):
    pass


class OfficialWorker:
    """A client of one official_worker.py process."""

    def __init__(self, python: str):
        self.python = python
        self._stderr = tempfile.TemporaryFile()
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # the official venv must not see our packages
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONHASHSEED"] = "0"
        self.process = subprocess.Popen(
            [python, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=str(HERE),
            env=env,
        )
        status, payload = self._read_reply()
        if status != STATUS_OK:
            raise WorkerDied(f"the official worker did not start: {payload!r}")
        self.info = json.loads(payload)

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def _died(self, what: str) -> WorkerDied:
        self.process.poll()
        return WorkerDied(
            f"the official worker {what} (exit code {self.process.returncode}); its stderr:\n{self.stderr_text()}"
        )

    def _read_reply(self) -> tuple[int, bytes]:
        stdout = self.process.stdout
        header = stdout.read(_REPLY_HEADER.size)
        if len(header) < _REPLY_HEADER.size:
            raise self._died("closed its output")
        status, length = _REPLY_HEADER.unpack(header)
        payload = stdout.read(length)
        if len(payload) < length:
            raise self._died("closed its output mid-reply")
        return status, payload

    def _call(self, kind: bytes, payload: bytes) -> tuple[int, bytes]:
        if self.process.poll() is not None:
            raise self._died("is not running")
        try:
            self.process.stdin.write(_HEADER.pack(kind, len(payload)))
            self.process.stdin.write(payload)
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self._died("closed its input") from None
        return self._read_reply()

    def handle(self, request_bytes: bytes) -> bytes:
        """The official handler's reply to ``request_bytes``; OfficialError if the handler raised."""
        status, payload = self._call(KIND_HANDLE, bytes(request_bytes))
        if status == STATUS_OK:
            return payload
        raise OfficialError(json.loads(payload.decode("utf-8")))

    def type_ops(self, ops: list[dict]) -> list[dict]:
        status, payload = self._call(KIND_TYPES, json.dumps(ops, ensure_ascii=True).encode("ascii"))
        if status != STATUS_OK:
            raise OfficialError(json.loads(payload.decode("utf-8")))
        return json.loads(payload.decode("utf-8"))

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self._stderr.close()


@pytest.fixture(scope="session")
def official():
    """The official SDK's handler and types, in a worker process for the whole session."""
    python = official_python()
    try:
        worker = OfficialWorker(python)
    except (OSError, WorkerDied) as e:
        pytest.fail(f"could not start the official SDK worker with {python}: {e}", pytrace=False)
    info = worker.info
    if info.get("statefun") != OFFICIAL_VERSION or info.get("protobuf_implementation") != "python":
        worker.close()
        pytest.fail(
            f"the official SDK worker runs apache-flink-statefun {info.get('statefun')} with the "
            f"{info.get('protobuf_implementation')} protobuf implementation; these tests need "
            f"{OFFICIAL_VERSION} with pure-python protobuf 3.x: {info}",
            pytrace=False,
        )
    try:
        yield worker
    finally:
        worker.close()

