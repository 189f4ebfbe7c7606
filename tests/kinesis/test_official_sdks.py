"""The official StateFun SDKs' Kinesis egress records are accepted byte for byte.

``kinesis_egress_message`` of the official Python SDK (apache-flink-statefun from PyPI, in its own
virtualenv: tests/support/official.py) and ``kinesisEgressMessage`` of the official JavaScript SDK
(apache-flink-statefun from npm, installed in compat/interpreter/js as its ``serve`` installs it) are run
in subprocesses of their own (tests/kinesis/official/), which print the TypedValue each builds:

1. that TypedValue is the one ``pystatefun.kinesis_egress_message`` builds, byte for byte;
2. given to the Kinesis egress (``check_record``, then ``put_entry``), it is the PutRecords entry StateFun
   puts: Data = the value's bytes, the PartitionKey, an ExplicitHashKey only when one is given and not empty;
3. end to end, on both emulators: ``pystatefun run`` with a function served by an official SDK (Python,
   then JavaScript) that emits such records to an ``io.statefun.kinesis.v1/egress``; the stream holds exactly the data and
   partition keys the SDK was given, and an explicit hash key decides the shard.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import time
import typing
from pathlib import Path

import pytest

import pystatefun
from e2e.processes import FunctionServer, Runtime
from e2e.processes import request as http_request
from pystatefun.io.kinesis.records import check_record, put_entry
from pystatefun.wire.request_reply_pb2 import TypedValue
from support.kinesis import CREDENTIALS, KinesisEmulator

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = Path(__file__).parent / "official"
JS_INTERPRETER = REPO / "compat" / "interpreter" / "js"  # its package-lock.json pins apache-flink-statefun 3.3.0
RECORD_TYPENAME = "type.googleapis.com/io.statefun.sdk.egress.KinesisEgressRecord"
EGRESS = "ko/out"

# (id, value, partition key, explicit hash key or None: not given); a value is str or bytes
CASES: list[tuple[str, str | bytes, str, str | None]] = [
    ("str-value", "hello, Kinesis", "key-1", None),
    ("bytes-value", bytes(range(256)), "key-2", None),
    ("non-ascii-value", "Grüße, 世界 🌍 — ñ", "key-3", None),
    ("non-ascii-partition-key", "v", "schlüssel-键-🔑", None),
    ("explicit-hash-key", "routed", "key-4", "170141183460469231731687303715884105728"),  # 2^127
    ("explicit-hash-key-zero", b"\x00", "key-5", "0"),
    ("explicit-hash-key-max", "max", "key-6", str(2**128 - 1)),
    ("empty-explicit-hash-key", "not routed", "key-7", ""),
    ("empty-value", "", "key-8", None),
    ("bytes-value-non-ascii-key-and-hash-key", b"\xff\xfe\x00binary", "ключ", "12345678901234567890"),
]
CASE_IDS = [case[0] for case in CASES]


def as_json(stream: str, value: str | bytes, partition_key: str, explicit_hash_key: str | None, *,
            typename_key: str = "typename") -> dict[str, typing.Any]:
    """A case as the helpers in tests/kinesis/official take it."""
    return {typename_key: EGRESS, "stream": stream,
            "value": {"text": value} if isinstance(value, str) else {"hex": value.hex()},
            "partition_key": partition_key, "explicit_hash_key": explicit_hash_key}


def ours(stream: str, value: str | bytes, partition_key: str, explicit_hash_key: str | None) -> pystatefun.EgressMessage:
    arguments: dict[str, typing.Any] = {}
    if explicit_hash_key is not None:
        arguments["explicit_hash_key"] = explicit_hash_key
    return pystatefun.kinesis_egress_message(typename=EGRESS, stream=stream, value=value, partition_key=partition_key,
                                             **arguments)


def run_helper(command: list[str], what: str, cases: list[dict]) -> list[dict]:
    """Runs a helper of tests/kinesis/official on the cases; its output, or a failure saying why not."""
    try:
        done = subprocess.run(command, input=json.dumps(cases), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"could not run the {what} ({' '.join(command)}): {e}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"the {what} failed (exit code {done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}",
                    pytrace=False)
    results = json.loads(done.stdout)
    assert len(results) == len(cases), f"the {what} answered {len(results)} records for {len(cases)} cases"
    return results


def js_sdk() -> Path:
    """The official JavaScript SDK's folder, installed as compat/interpreter/js/serve installs it: ``npm ci`` from
    its package-lock.json when the marker is missing or older than the lock file, under the same ``flock``
    (so a test and a starting interpreter never install at once). pytest.fail if impossible."""
    marker = JS_INTERPRETER / "node_modules" / ".npm-ci-done"
    lock = JS_INTERPRETER / "package-lock.json"

    def installed() -> bool:
        return marker.is_file() and marker.stat().st_mtime >= lock.stat().st_mtime

    if not installed():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not installed, so the official JavaScript SDK cannot be (.ci/run installs Node.js "
                        "and npm from Debian)", pytrace=False)
        with open(JS_INTERPRETER / ".install.lock", "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            if not installed():
                done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_INTERPRETER,
                                      capture_output=True, text=True, timeout=600)
                if done.returncode != 0:
                    pytest.fail(f"npm ci in {JS_INTERPRETER} failed (exit code {done.returncode}), so the official "
                                f"JavaScript SDK is not available:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}",
                                pytrace=False)
                marker.touch()
    sdk = JS_INTERPRETER / "node_modules" / "apache-flink-statefun"
    assert (sdk / "package.json").is_file(), f"{sdk} is missing after npm ci"
    return sdk


@pytest.fixture(scope="module")
def official_records(official_python: str) -> dict[str, list[bytes]]:
    """Each official SDK's serialized TypedValues for CASES, in order: {"python": [...], "javascript": [...]}."""
    cases = [as_json("orders", value, key, hash_key) for _, value, key, hash_key in CASES]
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed, so the official JavaScript SDK cannot run", pytrace=False)
    answers = {
        "python": run_helper([official_python, str(OFFICIAL / "python_records.py")], "official Python SDK", cases),
        "javascript": run_helper([node, str(OFFICIAL / "js_records.js"), str(js_sdk())], "official JavaScript SDK",
                                 cases),
    }
    for sdk, results in answers.items():
        assert {r["egress"] for r in results} == {EGRESS}, f"the {sdk} SDK's egress typenames: {results}"
    return {sdk: [bytes.fromhex(r["typed_value"]) for r in results] for sdk, results in answers.items()}


SDKS = ["python", "javascript"]


@pytest.mark.parametrize("sdk", SDKS)
@pytest.mark.parametrize("index", range(len(CASES)), ids=CASE_IDS)
def test_the_official_sdks_build_the_typed_value_we_build(official_records, sdk, index):
    _, value, partition_key, hash_key = CASES[index]
    theirs = official_records[sdk][index]
    mine = ours("orders", value, partition_key, hash_key)

    assert mine.typename == EGRESS
    assert mine.typed_value.SerializeToString() == theirs, (
        f"{sdk} SDK: {theirs.hex()}\npystatefun: {mine.typed_value.SerializeToString().hex()}\n"
        f"theirs decoded: {TypedValue.FromString(theirs)}")
    typed = TypedValue.FromString(theirs)
    assert (typed.typename, typed.has_value) == (RECORD_TYPENAME, True)


@pytest.mark.parametrize("sdk", SDKS)
@pytest.mark.parametrize("index", range(len(CASES)), ids=CASE_IDS)
def test_the_egress_puts_the_official_sdks_records_as_statefun_does(official_records, sdk, index):
    _, value, partition_key, hash_key = CASES[index]

    record = check_record(TypedValue.FromString(official_records[sdk][index]))
    entry = put_entry(record, None)

    expected: dict[str, typing.Any] = {"Data": value.encode() if isinstance(value, str) else value,
                                       "PartitionKey": partition_key}
    if hash_key:  # StateFun sets it only when it is not empty; an empty one is as if none was given
        expected["ExplicitHashKey"] = hash_key
    assert entry == expected
    assert record.stream == "orders"


# -- end to end: pystatefun run, the official Python SDK served remotely, a Kinesis egress on an emulator -----


def module(folder: Path, emulator: KinesisEmulator) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "module.yaml"
    path.write_text(f"""\
kind: io.statefun.endpoints.v2/http
spec:
  functions: ko/*
  urlPathTemplate: http://127.0.0.1:${{FUNCTIONS_PORT}}/statefun
---
kind: io.statefun.kinesis.v1/egress
spec:
  id: {EGRESS}
  awsRegion:
    type: custom-endpoint
    id: {CREDENTIALS["AWS_DEFAULT_REGION"]}
    endpoint: {emulator.endpoint}
  awsCredentials:
    type: basic
    accessKeyId: {CREDENTIALS["AWS_ACCESS_KEY_ID"]}
    secretAccessKey: {CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
---
kind: io.statefun.playground.v1/ingress
spec:
  port: ${{INGRESS_PORT}}
---
kind: io.statefun.playground.v1/egress
spec:
  port: ${{EGRESS_PORT}}
  topics: [unused]
""")
    return path


@pytest.fixture(params=SDKS)
def deployment(request: pytest.FixtureRequest, emulator: KinesisEmulator, tmp_path: Path) -> typing.Iterator[Runtime]:
    """``pystatefun run`` (embedded backend) whose ko/* functions are served by an official SDK (ko/emitter:
    tests/kinesis/official/emitter.py on the Python SDK, js_emitter.js on the JavaScript SDK), with a Kinesis
    egress ko/out on the emulator."""
    if request.param == "python":
        python, script = request.getfixturevalue("official_python"), str(REPO / "tests" / "e2e" / "official_server.py")
        command = lambda port: [python, script, str(OFFICIAL), "emitter:functions", str(port)]  # noqa: E731
    else:
        node, sdk = shutil.which("node"), str(js_sdk())
        if node is None:
            pytest.fail("node is not installed, so the official JavaScript SDK cannot run", pytrace=False)
        command = lambda port: [node, str(OFFICIAL / "js_emitter.js"), sdk, str(port)]  # noqa: E731
    server = FunctionServer(OFFICIAL, "emitter:functions", command)
    runtime = None
    try:
        server.start()
        runtime = Runtime(module(tmp_path / "module", emulator), tmp_path / "data",
                          env={"FUNCTIONS_PORT": str(server.port)})
        runtime.start()
        yield runtime
    finally:
        if runtime is not None:
            runtime.stop()
        server.stop()


def md5_hash_key(partition_key: str) -> int:
    """The hash key Kinesis gives a record without an explicit one: the MD5 of its partition key."""
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


def shard_of(shards: list[dict], hash_key: int) -> str:
    (shard,) = [s["ShardId"] for s in shards
                if int(s["HashKeyRange"]["StartingHashKey"]) <= hash_key <= int(s["HashKeyRange"]["EndingHashKey"])]
    return shard


def key_in(shards: list[dict], shard: str, prefix: str) -> str:
    """A partition key (``prefix`` and a number) whose MD5 falls in ``shard``."""
    return next(f"{prefix}-{i}" for i in range(1000) if shard_of(shards, md5_hash_key(f"{prefix}-{i}")) == shard)


def read_records(emulator: KinesisEmulator, stream: str, count: int, runtime: Runtime, timeout: float = 20) -> list[dict]:
    """The stream's records once it holds ``count`` (and a moment more, to see any extra), or a failure with
    what the runtime said."""
    deadline = time.monotonic() + timeout
    while True:
        records = emulator.read_all(stream)
        if len(records) >= count:
            time.sleep(0.3)
            return emulator.read_all(stream)
        if time.monotonic() > deadline:
            health = http_request(runtime.admin_port, "GET", "/health").body.decode(errors="replace")
            pytest.fail(f"{len(records)} of {count} records on {stream} in {emulator.name} after {timeout} s\n"
                        f"/health: {health}\nruntime log:\n{runtime.log.read_text()[-3000:]}", pytrace=False)
        time.sleep(0.1)


def test_records_of_an_official_sdk_reach_the_stream_as_given(deployment: Runtime, emulator: KinesisEmulator,
                                                              stream_name: str) -> None:
    emulator.create_stream(stream_name, shards=2)
    shards = emulator.shards(stream_name)
    assert len(shards) == 2
    low, high = (s["ShardId"] for s in sorted(shards, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"])))
    high_start = int(next(s for s in shards if s["ShardId"] == high)["HashKeyRange"]["StartingHashKey"])
    # explicit hash keys strictly inside a shard's range (moto mishandles a range's end), each with a partition
    # key whose MD5 would put the record in the other shard: the shard it lands in is the hash key's doing
    to_high, to_low = str(high_start + 12_345), str(high_start // 2)
    records = [
        ("str value", "plain", None),
        (bytes([0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF]), "bytes", None),
        ("Grüße, 世界 🌍", "ключ-键-🔑", None),
        ("to the high shard", key_in(shards, low, "low"), to_high),
        ("to the low shard", key_in(shards, high, "high"), to_low),
        ("empty hash key", "routed-by-md5", ""),
    ]
    body = json.dumps([as_json(stream_name, value, key, hash_key, typename_key="egress")
                       for value, key, hash_key in records])

    reply = deployment.send("/ko/emitter/one", "ko/records", body.encode())
    assert reply.status == 202, reply

    read = read_records(emulator, stream_name, len(records), deployment)
    assert sorted((r["partition_key"], r["data"]) for r in read) == sorted(
        (key, value.encode() if isinstance(value, str) else value) for value, key, _ in records)
    landed = {r["partition_key"]: r["shard"] for r in read}
    for _, key, hash_key in records:
        expected = shard_of(shards, int(hash_key) if hash_key else md5_hash_key(key))
        assert landed[key] == expected, f"record {key!r} (explicit hash key {hash_key!r}) in {landed[key]}, not {expected}"
    assert landed[records[3][1]] == high and landed[records[4][1]] == low
