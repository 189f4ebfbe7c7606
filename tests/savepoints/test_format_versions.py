"""A savepoint of an older format version still reads, verifies and restores: format 2 added the Kinesis
positions table, which a format 1 file (written by pystatefun before it, kept in fixtures/) does not have."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from pystatefun.savepoints import embedded
from pystatefun.savepoints.format import FORMAT_VERSION, SavepointError, SavepointReader, tables_of

FORMAT_1 = Path(__file__).parent / "fixtures" / "format-1.savepoint"


def test_a_format_1_savepoint_reads_as_one_without_kinesis_positions():
    with SavepointReader(FORMAT_1) as reader:
        reader.verify()  # its checksum is over the tables it has
        assert reader.manifest.format_version == 1
        assert "kinesis_positions" not in tables_of(1) and "kinesis_positions" in tables_of(FORMAT_VERSION)
        assert list(reader.rows("kinesis_positions")) == []
        assert [(r.typename, r.id, r.name) for r in reader.rows("state")] == [("example/counter", "alice", "count")]
        assert [(r.ingress, r.topic, r.partition, r.next_offset) for r in reader.rows("ingress_positions")] == [
            ("example/in", "clicks", 0, 42)]


def test_a_format_1_savepoint_restores(tmp_path):
    embedded.restore(str(FORMAT_1), tmp_path / "data")
    db = sqlite3.connect(tmp_path / "data" / "pystatefun.db")
    try:
        assert db.execute("SELECT typename, id, name FROM state").fetchall() == [("example/counter", "alice", "count")]
        assert db.execute("SELECT target_id FROM inbox").fetchall() == [("bob",)]
        assert db.execute("SELECT * FROM source_offsets").fetchall() == [("example/in", "clicks", 0, 42)]
        assert db.execute("SELECT COUNT(*) FROM source_positions").fetchone() == (0,)
    finally:
        db.close()


def test_a_newer_format_is_refused_with_what_to_do(tmp_path):
    newer = tmp_path / "newer.savepoint"
    shutil.copy(FORMAT_1, newer)
    db = sqlite3.connect(newer)
    db.execute("UPDATE manifest SET value = ? WHERE key = 'format_version'", (str(FORMAT_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(SavepointError, match=f"format version {FORMAT_VERSION + 1}, and this pystatefun reads up to "
                                             f"{FORMAT_VERSION}: upgrade pystatefun"):
        SavepointReader(newer)
