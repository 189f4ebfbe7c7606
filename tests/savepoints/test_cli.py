"""`pystatefun savepoint inspect` and `transform` on savepoints written directly with SavepointWriter."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from pystatefun.cli import main
from pystatefun.savepoints.format import SavepointReader, SpecRow
from pystatefun.savepoints.transform import SavedState
from pystatefun.sdk.types import IntType, StringType, make_json_type

from . import build


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["savepoint", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def ok(*args: str) -> str:
    code, out, err = cli(*args)
    assert code == 0, err
    return out


def one_line_error(*args: str) -> str:
    code, out, err = cli(*args)
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0].removeprefix("Error: ")


@pytest.fixture
def savepoint(tmp_path) -> Path:
    path = tmp_path / "sp.db"
    build.write(path)
    return path


# -- inspect -----------------------------------------------------------------------------------------

def test_inspect_prints_the_manifest_and_counts_per_type(savepoint):
    lines = ok("inspect", str(savepoint)).splitlines()
    fields = dict(line.split("\t", 1) for line in lines if not line.startswith("example/"))
    assert fields["format version"] == "2"
    assert fields["application"] == "shop"
    assert fields["source backend"] == "embedded"
    assert fields["partitions"] == "8"
    assert fields["created"] == "2023-11-14T22:13:20.000+00:00"
    assert fields["mode"] == "online"
    assert fields["checksum"].startswith("sha256:")
    assert fields["rows: state"] == "10" and fields["rows: messages"] == "2" and fields["rows: egress"] == "1"
    by_type = [line.split("\t") for line in lines if line.startswith("example/")]
    # type, addresses with state, state values, messages, delayed, parked
    assert by_type == [["example/blob", "1", "1", "0", "0", "0"],
                       ["example/cart", "3", "3", "0", "0", "1"],
                       ["example/counter", "5", "6", "2", "1", "0"]]


def test_inspect_json(savepoint):
    shown = json.loads(ok("inspect", str(savepoint), "--json", "--verify"))
    assert shown["manifest"]["application"] == "shop"
    assert shown["manifest"]["counts"]["state"] == 10
    assert shown["counts_by_type"]["example/counter"] == {"addresses": 5, "values": 6, "messages": 2, "delayed": 1, "parked": 0}
    assert shown["verified_rows"] == 21
    assert "verified_rows" not in json.loads(ok("inspect", str(savepoint), "--json"))


def test_inspect_on_a_terminal_draws_tables(savepoint, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "150")
    out = ok("inspect", str(savepoint))
    assert "savepoint " in out and "per function type" in out and "example/counter" in out
    assert "--verify reads every row" in out


def test_address_dump_decodes_values_as_the_admin_api_does(savepoint):
    shown = json.loads(ok("inspect", str(savepoint), "--address", "example/counter/c0", "--json"))
    assert shown == {
        "address": "example/counter/c0",
        "state": {
            "count": {"typename": "io.statefun.types/int", "value_base64": "", "value": 0, "expires_at_ms": None},
            "seen": {"typename": "io.statefun.types/string", "value_base64": "CgVoZWxsbw==", "value": "hello",
                     "expires_at_ms": build.CREATED_MS + 60_000},
        },
    }
    cart = json.loads(ok("inspect", str(savepoint), "--address", "example/cart/u1", "--json"))
    assert cart["state"]["items"]["value"] == {"apple": 2}
    raw = json.loads(ok("inspect", str(savepoint), "--address", "example/blob/b", "--json"))["state"]["raw"]
    assert raw == {"typename": "example/Raw", "value_base64": "/wD+", "expires_at_ms": None}  # not JSON: bytes only
    # as text: one line per state, the value as JSON
    assert ok("inspect", str(savepoint), "--address", "example/counter/c0").splitlines() == [
        "count\tio.statefun.types/int\t0\t", f"seen\tio.statefun.types/string\t\"hello\"\t{build.CREATED_MS + 60_000}"]
    assert json.loads(ok("inspect", str(savepoint), "--address", "example/counter/nobody", "--json"))["state"] == {}
    assert "is not an address" in cli("inspect", str(savepoint), "--address", "example/counter")[2]


def test_list_pages_through_the_ids_of_a_type(savepoint):
    code, out, err = cli("inspect", str(savepoint), "--list", "example/counter", "--limit", "2")
    assert (code, out.split()) == (0, ["c0", "c1"])
    assert "--after c1" in err
    assert ok("inspect", str(savepoint), "--list", "example/counter", "--limit", "2", "--after", "c1").split() == ["c2", "c3"]
    code, out, err = cli("inspect", str(savepoint), "--list", "example/counter", "--after", "c3")
    assert (code, out.split(), err) == (0, ["c4"], "")  # the last page: no hint
    page = json.loads(ok("inspect", str(savepoint), "--list", "example/counter", "--limit", "3", "--json"))
    assert page == {"function_type": "example/counter", "ids": ["c0", "c1", "c2"], "next_after": "c2"}
    assert json.loads(ok("inspect", str(savepoint), "--list", "example/nobody", "--json"))["ids"] == []
    assert cli("inspect", str(savepoint), "--after", "c1")[0] == 2  # --after without --list


def test_verify_passes_on_a_good_file(savepoint):
    assert "verified: 21 rows match the checksum" in ok("inspect", str(savepoint), "--verify")


def test_verify_refuses_a_flipped_byte_in_a_value(savepoint):
    with sqlite3.connect(savepoint) as db:
        (value,) = db.execute("SELECT value FROM state WHERE id = 'u1'").fetchone()
        flipped = value[:-2] + bytes([value[-2] ^ 0x01]) + value[-1:]
        db.execute("UPDATE state SET value = ? WHERE id = 'u1'", (flipped,))
    ok("inspect", str(savepoint))  # without --verify the rows are not read
    message = one_line_error("inspect", str(savepoint), "--verify")
    assert message == f"{savepoint} is damaged: its rows do not match the manifest's checksum; take the savepoint again or use another copy"


def test_a_missing_row_is_refused_at_once(savepoint):
    with sqlite3.connect(savepoint) as db:
        db.execute("DELETE FROM timers")
    assert "table timers has 0 rows, its manifest says 1" in one_line_error("inspect", str(savepoint))


@pytest.mark.parametrize("fraction", [0.9, 0.5, 0.01])
def test_a_truncated_file_is_refused(tmp_path, fraction):
    path = tmp_path / "big.db"
    build.write(path, build.rows(counters=3000, carts=1000))
    os.truncate(path, int(path.stat().st_size * fraction))
    message = one_line_error("inspect", str(path), "--verify")
    assert message.startswith(f"{path} is not a savepoint or is damaged: ") and "truncated" in message


def test_missing_and_foreign_files_are_refused(tmp_path):
    assert one_line_error("inspect", str(tmp_path / "nope.db")) == f"no savepoint at {tmp_path / 'nope.db'}: the file does not exist"
    (tmp_path / "text.db").write_text("hello " * 1000)
    assert "is not a savepoint or is damaged: file is not a database" in one_line_error("inspect", str(tmp_path / "text.db"))
    with sqlite3.connect(tmp_path / "other.db") as db:
        db.execute("CREATE TABLE t (x)")
    assert "is not a pystatefun savepoint" in one_line_error("inspect", str(tmp_path / "other.db"))


def test_a_file_url_works(savepoint):
    shown = json.loads(ok("inspect", savepoint.as_uri(), "--json"))
    assert shown["path"] == savepoint.as_uri() and shown["manifest"]["counts"]["state"] == 10


# -- transform ---------------------------------------------------------------------------------------

@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Writes a module of transform functions into the current directory (the import path, as for the
    CLI); gives its name, unique per test so that no other test's import is reused."""
    monkeypatch.chdir(tmp_path)

    def write(source: str) -> str:
        name = f"upgrade_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(source)
        return name

    return write


def states_of(path: Path) -> dict[tuple[str, str], dict[str, SavedState]]:
    from pystatefun.runtime.envelope import decode_value

    with SavepointReader(path) as reader:
        return {(typename, id): {row.name: SavedState(decode_value(row.value).typename, decode_value(row.value).value,
                                                      row.expire_at) for row in rows}
                for typename, id, rows in reader.states_by_address()}


def other_rows(path: Path) -> dict[str, list]:
    with SavepointReader(path) as reader:
        return {table: list(reader.rows(table)) for table in reader.manifest.counts if table != "state"}


UPGRADE = """
from pystatefun.savepoints.transform import SavedState

def upgrade(address, states):
    if address.typename == "example/counter":
        count = states.pop("count")  # rename count -> total
        states["total"] = count
        if "seen" in states:  # int -> string, and string -> int, keeping the expiry
            states["seen"] = SavedState.of(len(states["seen"].as_str()), "io.statefun.types/int", states["seen"].expire_at)
        states["total"] = SavedState.of(str(count.as_int()), "io.statefun.types/string")
    if address.typename == "example/cart":
        items = states["items"].as_json()
        if address.id == "u1":
            return None  # drop this address's state
        states["items"] = SavedState.of_json("example/Cart", {**items, "pear": 1})
    return states
"""


def test_transform_renames_changes_types_and_drops(tmp_path, savepoint, user_module):
    module = user_module(UPGRADE)
    out = tmp_path / "out.db"
    stdout = ok("transform", str(savepoint), str(out), "--with", f"{module}:upgrade")
    assert stdout.startswith(f"wrote {out}: 9 addresses with state, 8 changed, 1 left without state; 9 state values")

    states = states_of(out)
    assert states[(build.COUNTER, "c3")] == {"total": SavedState.of("30", StringType)}
    assert states[(build.COUNTER, "c0")]["seen"] == SavedState.of(5, IntType, build.CREATED_MS + 60_000)
    assert states[(build.CART, "u2")]["items"].decode(make_json_type("example/Cart")) == {"apple": 3, "pear": 1}
    assert (build.CART, "u1") not in states
    assert states[("example/blob", "b")] == {"raw": SavedState("example/Raw", b"\xff\x00\xfe")}  # untouched
    assert json.loads(ok("inspect", str(out), "--address", "example/counter/c1", "--json"))["state"] == {
        "total": {"typename": "io.statefun.types/string", "value_base64": "CgIxMA==", "value": "10", "expires_at_ms": None}}

    # everything else as it was, but the spec of the state whose type changed: the function registers it again
    before, after = other_rows(savepoint), other_rows(out)
    assert before.keys() == after.keys()
    for table in before:
        if table != "function_specs":
            assert after[table] == before[table], table
    assert after["function_specs"] == [SpecRow(build.COUNTER, "count", IntType.typename, 0, 0),
                                       SpecRow(build.CART, "items", "example/Cart", 0, 0)]
    with SavepointReader(out) as reader, SavepointReader(savepoint) as source:
        reader.verify()
        kept = ("application", "source_backend", "partitions", "mode", "created_ms", "created_at")
        assert {k: getattr(reader.manifest, k) for k in kept} == {k: getattr(source.manifest, k) for k in kept}
        assert reader.manifest.checksum != source.manifest.checksum
        assert reader.manifest.counts["state"] == 9 and reader.manifest.counts["function_specs"] == 2
    assert "left out the registered spec of state 'seen' of example/counter" in cli(
        "transform", str(savepoint), str(tmp_path / "again.db"), "--with", f"{module}:upgrade")[2]


def test_an_identity_transform_keeps_every_row(tmp_path, savepoint, user_module):
    module = user_module("def same(address, states):\n    return states\n")
    out = tmp_path / "out.db"
    ok("transform", str(savepoint), str(out), "--with", f"{module}:same")
    assert states_of(out) == states_of(savepoint)
    assert other_rows(out) == other_rows(savepoint)
    with SavepointReader(out) as reader, SavepointReader(savepoint) as source:
        assert sorted(reader.rows("state")) == sorted(source.rows("state"))  # the very bytes


def test_a_raising_transform_names_the_address_and_writes_nothing(tmp_path, savepoint, user_module):
    module = user_module("def upgrade(address, states):\n"
                         "    if address.id == 'c3':\n"
                         "        return {'total': states['count'].as_str()}\n"
                         "    return states\n")
    out = tmp_path / "out.db"
    message = one_line_error("transform", str(savepoint), str(out), "--with", f"{module}:upgrade")
    assert message == (f"transform failed at address example/counter/c3: TypeError: the state is io.statefun.types/int, "
                       f"not a string (io.statefun.types/string) ({tmp_path / module}.py, line 3)")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db" or "partial" in p.name) == ["sp.db"]


def test_a_wrong_answer_names_the_address(tmp_path, savepoint, user_module):
    module = user_module("def upgrade(address, states):\n    return {'count': 5}\n")
    message = one_line_error("transform", str(savepoint), str(tmp_path / "out.db"), "--with", f"{module}:upgrade")
    assert message.startswith("transform failed at address example/blob/b: state 'count' is int, not a SavedState")
    assert not (tmp_path / "out.db").exists()


def test_transform_refuses_an_existing_out_and_bad_references(tmp_path, savepoint, user_module):
    module = user_module("def upgrade(address, states):\n    return states\nNOT_A_FUNCTION = 3\n")
    (tmp_path / "out.db").write_bytes(b"keep me")
    assert "out.db exists already" in one_line_error("transform", str(savepoint), str(tmp_path / "out.db"),
                                                      "--with", f"{module}:upgrade")
    assert (tmp_path / "out.db").read_bytes() == b"keep me"
    assert one_line_error("transform", str(savepoint), str(tmp_path / "o.db"), "--with", f"{module}:nothing") == \
        f"module {module!r} has no attribute 'nothing'"
    assert "not a function" in one_line_error("transform", str(savepoint), str(tmp_path / "o.db"), "--with",
                                              f"{module}:NOT_A_FUNCTION")
    assert "no savepoint at" in one_line_error("transform", str(tmp_path / "nope.db"), str(tmp_path / "o.db"),
                                               "--with", f"{module}:upgrade")
    assert not (tmp_path / "o.db").exists()


def test_transform_refuses_a_damaged_source(tmp_path, savepoint, user_module):
    module = user_module("def upgrade(address, states):\n    return states\n")
    with sqlite3.connect(savepoint) as db:
        db.execute("UPDATE egress SET payload = ?", (b"record-2",))
    assert "do not match the manifest's checksum" in one_line_error(
        "transform", str(savepoint), str(tmp_path / "out.db"), "--with", f"{module}:upgrade")
    assert not (tmp_path / "out.db").exists()


def test_saved_state_helpers():
    assert SavedState.of(7, IntType).as_int() == 7
    assert SavedState.of(7, "io.statefun.types/long").as_int() == 7
    assert SavedState.of(True, "io.statefun.types/bool").as_bool() is True
    assert SavedState.of(1.5, "io.statefun.types/double").as_float() == 1.5
    assert SavedState.of("x", StringType).decode() == "x"
    state = SavedState.of_json("example/Cart", {"a": 1}, expire_at=5)
    assert (state.decode(), state.as_json(), state.expire_at) == ({"a": 1}, {"a": 1}, 5)
    assert state.replace(expire_at=None).expire_at is None
    with pytest.raises(TypeError, match="not an int or long"):
        state.as_int()
    with pytest.raises(ValueError, match="neither a built-in type nor JSON"):
        SavedState("example/Raw", b"\xff").decode()
    with pytest.raises(ValueError, match="not a built-in type"):
        SavedState.of(1, "example/Other")


def test_the_command_runs_as_a_program(tmp_path, savepoint):
    """The group is registered with the real entry point (not only in-process)."""
    result = subprocess.run([sys.executable, "-m", "pystatefun.cli", "savepoint", "inspect", str(savepoint), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["manifest"]["application"] == "shop"


def test_an_address_gets_all_its_states_even_when_they_were_written_apart(tmp_path, user_module):
    """Rows of one address need not be consecutive in the file: the transform still sees them together."""
    from pystatefun.savepoints.format import StateRow

    path = tmp_path / "apart.db"
    build.write(path, [StateRow(build.COUNTER, "a", "x", build.int_state(1), None),
                       StateRow(build.COUNTER, "b", "x", build.int_state(2), None),
                       StateRow(build.CART, "a", "x", build.int_state(3), None),
                       StateRow(build.COUNTER, "a", "y", build.int_state(4), None)])
    seen = tmp_path / "seen.txt"
    module = user_module("def record(address, states):\n"
                         f"    with open({str(seen)!r}, 'a') as f:\n"
                         "        f.write(f'{address.typename}/{address.id}:{sorted(states)}\\n')\n"
                         "    return states\n")
    ok("transform", str(path), str(tmp_path / "out.db"), "--with", f"{module}:record")
    assert seen.read_text().splitlines() == ["example/cart/a:['x']", "example/counter/a:['x', 'y']",
                                             "example/counter/b:['x']"]


def test_values_of_two_types_under_one_state_are_warned_about(tmp_path, savepoint, user_module):
    module = user_module("from pystatefun.savepoints.transform import SavedState\n"
                         "def some(address, states):\n"
                         "    if address.id == 'c1':\n"
                         "        states['count'] = SavedState.of('ten', 'io.statefun.types/string')\n"
                         "    return states\n")
    code, out, err = cli("transform", str(savepoint), str(tmp_path / "out.db"), "--with", f"{module}:some")
    assert code == 0 and "1 changed" in out
    assert "warning: left out the registered spec of state 'count' of example/counter (type io.statefun.types/int)" in err
    assert ("warning: state 'count' of example/counter has values of 2 types now (io.statefun.types/int, "
            "io.statefun.types/string): a function reads one type only") in err


def test_long_reads_show_a_progress_bar_on_a_terminal(savepoint, tmp_path, user_module, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich takes stderr for a terminal
    assert "verifying" in cli("inspect", str(savepoint), "--verify")[2]
    module = user_module("def same(address, states):\n    return states\n")
    err = cli("transform", str(savepoint), str(tmp_path / "out.db"), "--with", f"{module}:same")[2]
    assert "verifying" in err and "transforming" in err and "copying" in err
