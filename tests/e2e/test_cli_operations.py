"""The operations CLI (send, tail, state, parked, resume, dead-letters) against a running application."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .processes import Runtime

APP = Path(__file__).parent / "apps" / "counter"


@pytest.fixture
def app(tmp_path):
    runtime = Runtime(APP / "module.yaml", tmp_path / "data", env={"FRAGILE_FIXED": str(tmp_path / "fixed")}).start()
    yield runtime
    runtime.stop()


def cli(runtime: Runtime, *args: str, terminal: bool = False) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYSTATEFUN_INGRESS": f"http://127.0.0.1:{runtime.ingress_port}",
        "PYSTATEFUN_EGRESS": f"http://127.0.0.1:{runtime.egress_port}",
        "PYSTATEFUN_ADMIN": f"http://127.0.0.1:{runtime.admin_port}",
    }
    env.pop("FORCE_COLOR", None)
    if terminal:
        env.update(FORCE_COLOR="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "pystatefun.cli", *args], capture_output=True, text=True, env=env, timeout=60)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_send_tail_and_request_reply(app):
    assert ok(cli(app, "send", "crash/counter/k", "--type", "io.statefun.types/string", "--data", "m1")) == "accepted: crash/counter/k\n"
    assert json.loads(ok(cli(app, "tail", "counts")).strip()) == {"key": "k", "count": 1, "message": "m1"}
    assert ok(cli(app, "tail", "counts")) == ""  # read once
    reply = cli(app, "send", "crash/slow-answer/a", "--type", "io.statefun.types/int", "--data", "0", "--wait", "10")
    assert ok(reply) == "1\n"
    alone = cli(app, "send", "crash/slow-answer/a", "--type", "io.statefun.types/int", "--data", "0", "--wait")
    assert ok(alone) == "2\n"  # --wait alone waits up to 30 s
    bad = cli(app, "send", "crash/counter/k", "--type", "io.statefun.types/int", "--data", "lots")
    assert bad.returncode == 2 and "not an io.statefun.types/int value" in bad.stderr
    unknown = cli(app, "tail", "nope")
    assert unknown.returncode == 1 and "unknown topic" in unknown.stderr and "Traceback" not in unknown.stderr


def test_send_encodes_json_for_a_built_in_type_and_prints_a_reply_as_it_came(app):
    # the int's bytes are its protobuf wrapper's, not the text "0": else the address would park, unanswered
    assert ok(cli(app, "send", "crash/slow-answer/j", "--type", "io.statefun.types/int", "--json", "0", "--wait", "10")) == "1\n"
    wrong = cli(app, "send", "crash/slow-answer/j", "--type", "io.statefun.types/int", "--json", '"five"')
    assert wrong.returncode == 2 and "--json \"five\" is not an io.statefun.types/int value" in wrong.stderr
    text = '{"b":1,  "a":[2]}'  # printed as the function sent it, not parsed and written again
    assert ok(cli(app, "send", "crash/echo/x", "--type", "io.statefun.types/string", "--data", text, "--wait", "10")) == text + "\n"


def test_each_command_lists_only_the_options_it_uses():
    def options(command: str) -> set[str]:
        shown = subprocess.run([sys.executable, "-m", "pystatefun.cli", command, "--help"], capture_output=True, text=True,
                               timeout=30).stdout
        return {o for o in ("--ingress", "--egress", "--admin", "--token") if o in shown}

    assert options("send") == {"--ingress"}
    assert options("tail") == {"--egress"}
    for command in ("state", "parked", "resume", "dead-letters"):
        assert options(command) == {"--admin", "--token"}, command


def test_state_show_set_and_delete(app):
    ok(cli(app, "send", "crash/counter/k", "--type", "io.statefun.types/string", "--data", "m1"))
    assert ok(cli(app, "tail", "counts"))  # processed and committed
    assert ok(cli(app, "state", "crash/counter/k")) == "count\tio.statefun.types/int\t1\t\n"
    assert ok(cli(app, "state", "crash/counter/k", "--set", "count=41")) == "count\tio.statefun.types/int\t41\t\n"
    table = ok(cli(app, "state", "crash/counter/k", terminal=True))
    assert "state of crash/counter/k" in table and "41" in table and "┃" in table
    assert ok(cli(app, "state", "crash/counter/k", "--delete", "count")) == ""
    wrong = cli(app, "state", "crash/counter/k", "--set", "nope=1")
    assert wrong.returncode == 1 and "no state 'nope'" in wrong.stderr


def test_parked_resume_and_dead_letters(app, tmp_path):
    for address in ("crash/fragile/p", "crash/fragile/q"):
        ok(cli(app, "send", address, "--type", "io.statefun.types/string", "--data", "poison"))
    for _ in range(100):
        parked = ok(cli(app, "parked"))
        if parked.count("\n") == 2:
            break
    assert sorted(line.split("\t")[0] for line in parked.splitlines()) == ["crash/fragile/p", "crash/fragile/q"]
    assert "cannot digest poison" in parked
    # the reason spans lines (its traceback): escaped, each address stays one row of three cells
    assert all(len(line.split("\t")) == 3 and "\\n" in line for line in parked.splitlines())
    first = cli(app, "parked", "--limit", "1")  # a page, and on stderr how to get the next one
    assert ok(first).split("\t")[0] == "crash/fragile/p" and "--after crash/fragile/p" in first.stderr
    assert ok(cli(app, "parked", "--after", "crash/fragile/p")).split("\t")[0] == "crash/fragile/q"
    assert ok(cli(app, "resume", "crash/fragile/q", "--skip")).startswith("resumed crash/fragile/q")
    (tmp_path / "fixed").touch()
    assert ok(cli(app, "resume", "crash/fragile/p")) == "resumed crash/fragile/p\n"
    assert ok(cli(app, "parked")) == ""
    assert "no parked addresses" in ok(cli(app, "parked", terminal=True))
    (letter,) = ok(cli(app, "dead-letters")).splitlines()
    seq, target, caller, typename, reason = letter.split("\t")
    assert (target, typename) == ("crash/fragile/q", "io.statefun.types/string") and "skipped" in reason
    assert json.loads(ok(cli(app, "tail", "fragile")).strip())["key"] == "p"
    again = cli(app, "resume", "crash/fragile/p")
    assert again.returncode == 1 and "is not parked" in again.stderr


def test_an_unreachable_runtime_is_a_message_not_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pystatefun.cli", "parked", "--admin", "http://127.0.0.1:1"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert "nothing answers at http://127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr
