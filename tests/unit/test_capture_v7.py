"""Capture v7: no trigger reads another table (v6's looked up the reverse process's meta row on every
write of the writer); the reverse process discards what capture recorded of its own writes before its
COMMIT. A v6 store is upgraded in place by ``install``, keeping its unpublished changes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from replicator.capture.install import install, read_state
from replicator.capture.storefile import table_columns
from replicator.capture.triggers import CAPTURE_VERSION, META, head_seq, trigger_names
from replicator.reverse.apply import apply
from replicator.reverse.aside import parked_rows
from replicator.reverse.changelog import Change
from replicator.sinks.neo4j.model import GraphModel
from replicator.store.schema import TABLES
from replicator.testing.legacy_capture import v6_trigger_sql
from replicator.testing.writer import MemoryWriter
from tests.unit.test_capture_seq import _changes


def _trigger_sql(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        names = [n for t in TABLES for n in trigger_names(t)]
        marks = ",".join("?" * len(names))
        return [str(r[0]) for r in conn.execute(f"SELECT sql FROM sqlite_master WHERE name IN ({marks})", names)]
    finally:
        conn.close()


def _as_v6(path: Path) -> None:
    """Turn an installed store into what capture v6 left: v6's triggers, version 6."""
    conn = sqlite3.connect(path)
    for table in TABLES:
        columns = table_columns(conn, table)
        for name, sql in zip(trigger_names(table), v6_trigger_sql(table, columns), strict=True):
            conn.execute(f'DROP TRIGGER "{name}"')
            conn.execute(sql)
    conn.execute(f"UPDATE {META} SET value = '6' WHERE key = 'version'")
    conn.commit()
    conn.close()


def test_a_v6_store_is_upgraded_in_place_to_triggers_that_read_no_other_table(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    MemoryWriter.create(path).close()
    install(path)
    _as_v6(path)
    w = MemoryWriter(path)
    a = w.create_entity("a", "t", ["one"])
    w.create_relation(a, w.create_entity("b", "t"), "knows")
    w.close()
    kept = _changes(path)
    assert any(META in sql for sql in _trigger_sql(path))  # v6: each trigger looked up the meta table

    state = install(path)

    assert state.version == CAPTURE_VERSION == 7 and not state.missing_triggers
    sqls = _trigger_sql(path)
    assert len(sqls) == 3 * len(TABLES) and not [s for s in sqls if META in s], sqls
    assert _changes(path) == kept  # unpublished changes kept, with their seqs
    w = MemoryWriter(path)
    w.rename(a, "a2")
    w.close()
    assert _changes(path)[-1] == (kept[-1][0] + 1, "entities", "u", a)


def test_reverse_writes_are_discarded_before_commit_and_the_next_change_gets_the_next_seq(tmp_path: Path) -> None:
    """Without the fence (capture running, no refusal triggers): creates, an update, a relation, a
    cascading delete and a parked change by the reverse process leave the changelog as it was."""
    path = tmp_path / "memory.db"
    w = MemoryWriter.create(path)
    alice, bob = w.create_entity("alice", "person", ["x"]), w.create_entity("bob", "person")
    w.create_relation(alice, bob, "knows")
    w.close()
    install(path)
    before, head = _changes(path), head_seq(sqlite3.connect(path))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    changes = [
        Change(1, 0, 1_001, "entity", "u", 50, {"id": 50, "name": "carol", "entity_type": "p", "observations": []}),
        Change(2, 0, 1_002, "entity", "u", alice, {"id": alice, "name": "alice", "entity_type": "p"}),
        Change(3, 0, 1_003, "relation", "u", 9, {"id": 9}, 50, bob, "KNOWS"),
        Change(4, 0, 1_004, "entity", "d", bob),  # cascades to both relations
        Change(5, 0, 1_005, "entity", "u", 51, {"id": 51, "name": "carol", "entity_type": "p"}),  # name taken
    ]
    done = apply(conn, "Entity", changes, GraphModel(), None)

    assert done.rows == 5 and len(parked_rows(conn, "Entity")) == 1, done
    assert conn.execute("SELECT count(*) FROM relations").fetchone()[0] == 0
    assert _changes(path) == before and head_seq(conn) == head, "a reverse write was captured"
    assert read_state(conn).version == CAPTURE_VERSION
    MemoryWriter(path).create_entity("dave", "person")
    assert _changes(path)[-1][0] == head + 1  # no seq skipped; none anyone saw reused
