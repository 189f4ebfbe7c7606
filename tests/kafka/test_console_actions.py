"""The console's actions on the admin API of a Kafka-backend application, asked of either of two real
worker processes on a real broker, so each request also reaches a worker that does not own its address:
a message sent through POST /messages is answered with the function's reply, a bad one with the ingress's
4xx, and a dead letter replayed after its cause is fixed is delivered once, replayed one after the other
or all at once through both workers."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from e2e.processes import request
from kafka.harness import Worker, sharing, unique, wait_until
from pystatefun import StringType
from pystatefun.runtime.envelope import partition_of

PARTITIONS = 4
IDS = ["a", "b", "c", "d", "e", "f"]  # their partitions are all four, so both workers own some of them
STRING = "io.statefun.types/string"

FUNCTIONS = '''
import os

from pystatefun import IntType, StatefulFunctions, ValueSpec, make_json_type

functions = StatefulFunctions()
COUNT = make_json_type("ca/count")


@functions.bind("ca/fragile", specs=[ValueSpec("handled", IntType)])
def fragile(context, message):
    """Raises on "poison" until the file $FIXED exists (the fix is deployed); counts what it handled and
    answers a caller that waits with the count."""
    if message.as_string() == "poison" and not os.path.exists(os.environ["FIXED"]):
        raise RuntimeError("cannot digest poison")
    context.storage.handled = (context.storage.handled or 0) + 1
    if context.caller is not None:
        context.reply(value=context.storage.handled, value_type=COUNT)
'''

MODULE = """\
kind: pystatefun.v1/embedded
spec:
  functions: ca/*
  module: functions:functions
"""


def text(value: str) -> bytes:
    return StringType.serializer().serialize(value)


class App:
    """Two workers of one application (no HTTP ingress: the admin API takes the messages)."""

    def __init__(self, folder: Path, bootstrap: str):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "functions.py").write_text(FUNCTIONS)
        module = folder / "module.yaml"
        module.write_text(MODULE)
        self.fixed = folder / "fixed"
        app = unique("ca")
        self.workers = [Worker(module, bootstrap, app, f"w{n}", folder / f"w{n}.log", PARTITIONS,
                               env={"FIXED": str(self.fixed)}) for n in range(2)]

    def admin(self, worker: int, method: str, path: str, body: bytes = b"", headers: dict | None = None):
        reply = request(self.workers[worker].admin_port, method, path, body, headers, timeout=90)
        return reply.status, json.loads(reply.body)

    def send(self, worker: int, id: str, value: str, wait: bool = False):
        return self.admin(worker, "POST", f"/messages/ca/fragile/{id}" + ("?wait=30" if wait else ""), text(value),
                          {"Content-Type": f"application/vnd.{STRING}"})



@pytest.fixture
def app(tmp_path, kafka_bootstrap):
    app = App(tmp_path, kafka_bootstrap)
    with sharing(app.workers, PARTITIONS):
        yield app


def test_messages_are_answered_by_any_worker_and_dead_letters_replayed_once(app):
    assert {partition_of(id, PARTITIONS) for id in IDS} == set(range(PARTITIONS))
    for id in IDS:  # through each worker: one of the two does not own the address
        for worker, count in ((0, 1), (1, 2)):
            status, answer = app.send(worker, id, "hello", wait=True)
            assert status == 200, answer
            assert answer == {"address": f"ca/fragile/{id}",
                              "reply": {"typename": "ca/count", "value_base64": answer["reply"]["value_base64"],
                                        "value": count}}
    refused = app.admin(1, "POST", "/messages/ca/fragile/a", b"hello", {"Content-Type": "text/plain"})
    assert refused[0] == 415 and "application/vnd.<namespace>/<name>" in refused[1]["error"]

    for id in IDS:  # each address parks on "poison", and the operator skips it to the dead letters
        assert app.send(0, id, "poison") == (202, {"address": f"ca/fragile/{id}", "accepted": True})
    wait_until(lambda: len(app.admin(1, "GET", "/parked")[1]) == len(IDS), "every address parked")
    for id in IDS:
        assert app.admin(1, "POST", f"/parked/ca/fragile/{id}/skip")[0] == 200
    wait_until(lambda: len(app.admin(0, "GET", "/dead-letters")[1]) == len(IDS), "every skipped message listed")
    letters = {letter["target"].rsplit("/", 1)[1]: letter["seq"] for letter in app.admin(0, "GET", "/dead-letters")[1]}
    assert sorted(letters) == IDS

    app.fixed.touch()  # the fix is deployed (both workers read the same file)
    one_by_one, at_once = IDS[:3], IDS[3:]
    for id in one_by_one:  # replayed through one worker, then again through the other
        seq = letters[id]
        assert app.admin(0, "POST", f"/dead-letters/{seq}/replay") == (
            202, {"seq": seq, "target": f"ca/fragile/{id}", "replayed": True})
        assert app.admin(1, "POST", f"/dead-letters/{seq}/replay") == (
            200, {"seq": seq, "target": f"ca/fragile/{id}", "replayed": False, "already_replayed": True})
    with ThreadPoolExecutor(12) as pool:  # four times each, through both workers, all at once
        answers = list(pool.map(lambda job: app.admin(job[0] % 2, "POST", f"/dead-letters/{letters[job[1]]}/replay"),
                                [(n, id) for id in at_once for n in range(4)]))
    for id in at_once:
        mine = [answer for status, answer in answers if answer["target"] == f"ca/fragile/{id}"]
        assert len(mine) == 4 and [answer["replayed"] for answer in mine].count(True) == 1, mine

    # the next message to each address comes after the replayed one: its count shows each was handled once
    # (two "hello"s and the poison), and a second delivery would have come before it
    for id in IDS:
        status, answer = app.send(1, id, "after", wait=True)
        assert (status, answer["reply"]["value"]) == (200, 4), (id, answer)

    # that each was replayed is kept with its address's partition: after a kill -9, the worker that takes
    # the partitions over restores it, and delivers none of them again
    app.workers[1].kill()
    wait_until(lambda: app.workers[0].owned_partitions() == PARTITIONS, "worker 0 took every partition over")
    for id in IDS:
        assert app.admin(0, "POST", f"/dead-letters/{letters[id]}/replay")[1]["already_replayed"] is True
        status, answer = app.send(0, id, "last", wait=True)
        assert (status, answer["reply"]["value"]) == (200, 5), (id, answer)
