"""The console's actions on the admin API, against a real `pystatefun run` (embedded backend): a message
sent to an address through POST /messages is taken exactly as the HTTP ingress takes it (request/reply,
refusals, idempotency), and POST /dead-letters/{seq}/replay sends a dead letter again, once, however often
and however concurrently it is asked, across a kill -9 too."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pystatefun import IntType, StringType

from .processes import Runtime, request

APP = Path(__file__).parent / "apps" / "counter"
STRING = "io.statefun.types/string"


def text(value: str) -> bytes:
    return StringType.serializer().serialize(value)


def admin(runtime: Runtime, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    reply = request(runtime.admin_port, method, path, body, headers)
    return reply.status, json.loads(reply.body)


def post_message(runtime: Runtime, path: str, typename: str, body: bytes, key: str | None = None):
    headers = {"Content-Type": f"application/vnd.{typename}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return admin(runtime, "POST", f"/messages/{path}", body, headers)


def drain(runtime: Runtime, topic: str) -> list[dict]:
    records = []
    while (reply := runtime.take(topic, wait=2)).status == 200:
        records.append(json.loads(reply.body))
    return records


def parked_addresses(runtime: Runtime) -> list[str]:
    return [entry["address"] for entry in admin(runtime, "GET", "/parked")[1]]


@pytest.fixture
def fixed(tmp_path) -> Path:
    """The file whose existence is crash/fragile's fix (it raises on "poison" until then)."""
    return tmp_path / "fixed"


@pytest.fixture
def runtime(tmp_path, fixed):
    runtime = Runtime(APP / "module.yaml", tmp_path / "data", env={"FRAGILE_FIXED": str(fixed)}).start()
    try:
        yield runtime
    finally:
        runtime.stop()


def test_a_message_sent_with_wait_is_answered_with_the_functions_reply(runtime):
    status, answer = post_message(runtime, "crash/echo/a?wait=20", STRING, text("hello"))
    assert status == 200, answer
    assert answer["address"] == "crash/echo/a"
    assert answer["reply"]["typename"] == "crash/Text"  # the type the function answered with
    assert base64.b64decode(answer["reply"]["value_base64"]) == b"hello"

    # without ?wait: accepted once durable; with an Idempotency-Key, a retry is not applied again
    for _ in range(2):
        assert post_message(runtime, "crash/counter/c", STRING, text("once"), key="k-1") == (
            202, {"address": "crash/counter/c", "accepted": True})
    assert post_message(runtime, "crash/counter/c", STRING, text("twice"), key="k-2")[0] == 202
    counts = drain(runtime, "counts")
    assert [(r["message"], r["count"]) for r in counts] == [("once", 1), ("twice", 2)]
    # the key is the ingress's: the same request sent to the ingress with it is a retry there too
    assert runtime.send("/crash/counter/c", STRING, text("once"), key="k-1").status == 202
    assert admin(runtime, "GET", "/state/crash/counter/c")[1]["state"]["count"]["value"] == 2


def test_a_message_the_ingress_would_refuse_gets_its_clear_4xx(runtime):
    cases = [
        ("crash/counter/x", {"Content-Type": "text/plain"}, b"hi", 415, "application/vnd.<namespace>/<name>"),
        ("crash/counter/x", {"Content-Type": "application/vnd.io.statefun.types/int"}, b"5", 400,
         "protobuf encoding"),
        ("crash/nothing/x", {"Content-Type": f"application/vnd.{STRING}"}, text("hi"), 404,
         "no function type 'crash/nothing'"),
        ("crash/counter/x?wait=-1", {"Content-Type": f"application/vnd.{STRING}"}, text("hi"), 400,
         "wait must be a number of seconds"),
    ]
    for path, headers, body, status, reason in cases:
        answer = request(runtime.admin_port, "POST", f"/messages/{path}", body, headers)
        assert answer.status == status, (path, answer)
        error = json.loads(answer.body)["error"]
        assert reason in error, error
        # word for word what the ingress answers the same request
        ingress = request(runtime.ingress_port, "POST", f"/{path}", body, headers)
        assert (ingress.status, ingress.body.decode().strip()) == (status, error)
    assert drain(runtime, "counts") == []  # none of them was taken


def park_and_skip(runtime: Runtime, id: str) -> int:
    """Sends "poison" to crash/fragile/ID, which parks it, then skips it: the seq of its dead letter."""
    assert runtime.send(f"/crash/fragile/{id}", STRING, text("poison")).status == 202
    for _ in range(200):
        if f"crash/fragile/{id}" in parked_addresses(runtime):
            break
        runtime.take("fragile", wait=0.05)
    assert admin(runtime, "POST", f"/parked/crash/fragile/{id}/skip")[0] == 200
    letters = admin(runtime, "GET", "/dead-letters")[1]
    (seq,) = [letter["seq"] for letter in letters if letter["target"] == f"crash/fragile/{id}"]
    return seq


def app_with(folder: Path, old: str, new: str) -> Path:
    """The counter application in ``folder``, its module.yaml with ``old`` replaced by ``new``."""
    folder.mkdir()
    (folder / "counter.py").write_text((APP / "counter.py").read_text())
    module = (APP / "module.yaml").read_text()
    assert old in module
    (folder / "module.yaml").write_text(module.replace(old, new))
    return folder / "module.yaml"


def cli(runtime: Runtime, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pystatefun.cli", *args, "--admin",
                           f"http://127.0.0.1:{runtime.admin_port}"], capture_output=True, text=True, timeout=60)


def test_a_dead_letter_is_replayed_once_after_its_cause_is_fixed(tmp_path, runtime, fixed):
    one, other = park_and_skip(runtime, "r"), park_and_skip(runtime, "s")
    assert drain(runtime, "fragile") == []
    fixed.touch()  # the fix is deployed

    assert admin(runtime, "POST", f"/dead-letters/{one}/replay") == (
        202, {"seq": one, "target": "crash/fragile/r", "replayed": True})
    assert admin(runtime, "POST", f"/dead-letters/{one}/replay") == (
        200, {"seq": one, "target": "crash/fragile/r", "replayed": False, "already_replayed": True})
    with ThreadPoolExecutor(8) as pool:  # all at once: one of them delivers it
        answers = list(pool.map(lambda _: admin(runtime, "POST", f"/dead-letters/{other}/replay"), range(8)))
    assert sorted(status for status, _ in answers) == [200] * 7 + [202]
    assert [answer["replayed"] for _, answer in answers].count(True) == 1

    # a later message to each address runs after the replayed one: a second delivery would show before it
    for id in ("r", "s"):
        assert runtime.send(f"/crash/fragile/{id}", STRING, text("after")).status == 202
    records = drain(runtime, "fragile")
    assert sorted((r["key"], r["message"]) for r in records) == [
        ("r", "after"), ("r", "poison"), ("s", "after"), ("s", "poison")]
    assert [r["message"] for r in records if r["key"] == "r"] == ["poison", "after"]

    # that they were replayed is durable, in the data dir with the messages they sent, and does not expire
    # as the ingress's keys do: restarted after a kill -9 where those last a millisecond, none is sent again
    runtime.kill()
    fixed.unlink()  # for one more dead letter
    short_keys = Runtime(app_with(tmp_path / "app", "port: ${INGRESS_PORT}",
                                  "port: ${INGRESS_PORT}\n  idempotency_key_ttl: 1ms"),
                         runtime.data_dir, env={"FRAGILE_FIXED": str(fixed)}).start()
    try:
        third = park_and_skip(short_keys, "v")  # and one replayed there
        fixed.touch()
        assert admin(short_keys, "POST", f"/dead-letters/{third}/replay")[0] == 202
        assert [(r["key"], r["message"]) for r in drain(short_keys, "fragile")] == [("v", "poison")]
        short_keys.kill()
        short_keys.start()
        replayed = cli(short_keys, "dead-letters", "replay", str(one))
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout == (f"dead letter {one} was replayed to crash/fragile/r already: it is delivered "
                                   "once, not again\n")
        for seq in (other, third):
            assert admin(short_keys, "POST", f"/dead-letters/{seq}/replay")[1]["already_replayed"] is True
        assert drain(short_keys, "fragile") == []
    finally:
        short_keys.stop()


def test_a_replay_is_refused_while_its_target_type_is_missing_and_kept_when_its_function_fails_again(
        tmp_path, runtime, fixed):
    seq = park_and_skip(runtime, "t")
    assert admin(runtime, "POST", f"/dead-letters/{seq + 1}/replay") == (
        404, {"error": f"there is no dead letter {seq + 1}: GET /dead-letters lists them"})
    assert admin(runtime, "POST", "/dead-letters/first/replay")[0] == 400
    missing = cli(runtime, "dead-letters", "replay", str(seq + 1))
    assert missing.returncode == 1 and f"there is no dead letter {seq + 1}" in missing.stderr
    # the admin URL given to the group, before the subcommand's name, is the one used
    before = subprocess.run([sys.executable, "-m", "pystatefun.cli", "dead-letters", "--admin",
                             f"http://127.0.0.1:{runtime.admin_port}", "replay", str(seq + 1)],
                            capture_output=True, text=True, timeout=60)
    assert before.returncode == 1 and f"there is no dead letter {seq + 1}" in before.stderr, before.stderr

    # the same data dir under a module without crash/fragile: its dead letter's target type does not
    # exist, and the replay is refused as the ingress refuses such a message, without counting as done
    module = app_with(tmp_path / "app", "functions: crash/*", "functions: crash/counter")
    runtime.stop()
    narrow = Runtime(module, runtime.data_dir, env={"FRAGILE_FIXED": str(fixed)}).start()
    try:
        assert admin(narrow, "POST", f"/dead-letters/{seq}/replay") == (
            404, {"error": "no function type 'crash/fragile' is bound in the module"})
    finally:
        narrow.stop()

    runtime.start()  # the type is back, but not the fix: the replayed message parks its address again
    assert admin(runtime, "POST", f"/dead-letters/{seq}/replay")[0] == 202
    for _ in range(200):
        if parked_addresses(runtime):
            break
        runtime.take("fragile", wait=0.05)
    assert parked_addresses(runtime) == ["crash/fragile/t"]
    fixed.touch()  # nothing is lost: resumed after the fix, it runs once
    assert admin(runtime, "POST", "/parked/crash/fragile/t/resume")[0] == 200
    assert [(r["key"], r["message"]) for r in drain(runtime, "fragile")] == [("t", "poison")]
    assert admin(runtime, "POST", f"/dead-letters/{seq}/replay")[1]["already_replayed"] is True


def test_a_reply_nobody_waits_for_is_no_message_to_replay(runtime):
    # crash/slow-answer answers a second after the request stopped waiting: its reply becomes a dead letter
    status, answer = post_message(runtime, "crash/slow-answer/z?wait=0.5", "io.statefun.types/int",
                                  IntType.serializer().serialize(1))
    assert status == 504 and "no reply within 0.5 s" in answer["error"]
    for _ in range(200):
        letters = admin(runtime, "GET", "/dead-letters")[1]
        if letters:
            break
        runtime.take("counts", wait=0.05)
    (letter,) = letters
    assert letter["target"].startswith("pystatefun/reply/") and letter["caller"] == "crash/slow-answer/z"
    status, answer = admin(runtime, "POST", f"/dead-letters/{letter['seq']}/replay")
    assert status == 409 and "a reply whose request was answered already or waits no more" in answer["error"]
