"""Seq without AUTOINCREMENT (capture v6, docs/capture.md "Seq"): strictly increasing and never reused
after the source deleted every published row, across a source restart and VACUUM; a mark is no change;
a v5 changelog (AUTOINCREMENT, its high mark in sqlite_sequence) upgraded in place by ``install``
keeps its rows and never reassigns a seq; the source refuses a v5 store until then."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from replicator.capture import install as install_module
from replicator.capture.install import install, read_state, uninstall
from replicator.capture.storefile import CaptureError
from replicator.capture.triggers import CAPTURE_VERSION, CHANGELOG, MARK, META, changelog_rows, head_seq
from replicator.source.store import SourceError, StoreReader
from replicator.testing.writer import MemoryWriter

#: The changelog as capture v5 created it (a frozen copy of the old format: what a store upgraded
#: from v5 holds).
V5_CHANGELOG = f"""CREATE TABLE {CHANGELOG} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('c', 'u', 'd')),
    row_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    before TEXT,
    after TEXT
)"""


def _store(tmp_path: Path) -> tuple[Path, MemoryWriter]:
    path = tmp_path / "memory.db"
    MemoryWriter.create(path).close()
    install(path)
    return path, MemoryWriter(path)


def _changes(path: Path) -> list[tuple[int, str, str, int]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(f"SELECT seq, tbl, op, row_id FROM {CHANGELOG} WHERE op <> '{MARK}' ORDER BY seq")
        return [(int(s), str(t), str(o), int(r)) for s, t, o, r in rows]
    finally:
        conn.close()


def _publish_all(path: Path) -> int:
    """What the source does once everything is committed to Kafka: delete the published rows."""
    reader = StoreReader(path)
    try:
        head = reader.head_seq()
        assert reader.delete_published(head, busy_timeout_ms=1000)
        return head
    finally:
        reader.close()


def test_seq_is_never_reused_after_every_published_row_was_deleted(tmp_path: Path) -> None:
    path, w = _store(tmp_path)
    a = w.create_entity("a", "t", ["one"])
    w.add_observations(a, ["two"])
    w.close()
    published = _publish_all(path)
    assert _changes(path) == [] and changelog_rows(sqlite3.connect(path)) == 0
    assert read_state(sqlite3.connect(path)).backlog == 0 and head_seq(sqlite3.connect(path)) == published

    w = MemoryWriter(path)  # the writer goes on; the source restarts and deletes again (idempotent)
    w.add_observations(a, ["three"])
    w.close()
    assert [seq for seq, *_ in _changes(path)] == [published + 1]
    assert _publish_all(path) == published + 1 and _publish_all(path) == published + 1

    conn = sqlite3.connect(path)
    conn.execute("VACUUM")  # compaction keeps an INTEGER PRIMARY KEY's values, the mark's too
    conn.close()
    w = MemoryWriter(path)
    w.add_observations(a, ["four"])
    w.close()
    assert [seq for seq, *_ in _changes(path)] == [published + 2]


def test_deleting_published_rows_keeps_the_unpublished_ones_and_marks_only_the_highest(tmp_path: Path) -> None:
    path, w = _store(tmp_path)
    ids = [w.create_entity(f"e{i}", "t") for i in range(4)]
    w.close()
    seqs = [seq for seq, *_ in _changes(path)]
    reader = StoreReader(path)
    assert reader.delete_published(seqs[1], busy_timeout_ms=1000)
    assert [seq for seq, *_ in _changes(path)] == seqs[2:]  # the highest row is unpublished: no mark
    reader.check()
    assert [r.row_id for r in reader.changelog_after(seqs[1], 100)] == ids[2:]
    reader.close()
    assert _publish_all(path) == seqs[-1]
    conn = sqlite3.connect(path)
    assert conn.execute(f"SELECT seq, op FROM {CHANGELOG}").fetchall() == [(seqs[-1], MARK)]
    reader = StoreReader(path)
    reader.check()
    assert reader.changelog_after(0, 100) == [] and reader.backlog(0) == 0  # a mark is no change
    reader.close()


def test_the_changelog_refuses_an_op_that_is_no_change_or_mark(tmp_path: Path) -> None:
    _, w = _store(tmp_path)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        w.conn.execute(f"INSERT INTO {CHANGELOG} (tbl, op, row_id, ts_ms) VALUES ('entities', 'x', 1, 0)")
    w.close()


def _as_v5(path: Path, high: int) -> list[tuple[int, str, str, int]]:
    """Turn an installed store into what capture v5 left: the changelog with AUTOINCREMENT, its high
    mark ``high`` in sqlite_sequence, the rows it holds kept with their seqs, version 5."""
    conn = sqlite3.connect(path)
    rows = conn.execute(f"SELECT * FROM {CHANGELOG} WHERE op <> '{MARK}'").fetchall()
    conn.execute(f"DROP TABLE {CHANGELOG}")  # the triggers stay: v5's and v6's are the same SQL
    conn.execute(V5_CHANGELOG)
    conn.executemany(f"INSERT INTO {CHANGELOG} VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (CHANGELOG,))
    conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (CHANGELOG, high))
    conn.execute(f"UPDATE {META} SET value = '5' WHERE key = 'version'")
    conn.commit()
    conn.close()
    assert head_seq(sqlite3.connect(path)) == high
    return [(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]


def test_a_v5_changelog_is_upgraded_in_place_keeping_its_rows_and_its_high_mark(tmp_path: Path) -> None:
    path, w = _store(tmp_path)
    a = w.create_entity("a", "t", ["one"])
    w.add_observations(a, ["two"])
    w.close()
    kept = _as_v5(path, high=_changes(path)[-1][0])  # unpublished rows up to the high mark
    with pytest.raises(SourceError, match="version 5") as refused:  # the source waits for the upgrade
        StoreReader(path).check()
    assert "source install" in str(refused.value.hint)

    state = install(path)
    assert state.version == CAPTURE_VERSION and not state.missing_triggers and state.backlog == len(kept)
    conn = sqlite3.connect(path)
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (CHANGELOG,)).fetchone()[0]
    assert "AUTOINCREMENT" not in ddl.upper()
    assert conn.execute("SELECT count(*) FROM sqlite_sequence WHERE name = ?", (CHANGELOG,)).fetchone()[0] == 0
    conn.close()
    assert _changes(path) == kept
    w = MemoryWriter(path)
    w.add_observations(a, ["three"])
    w.close()
    assert _changes(path) == [*kept, (kept[-1][0] + 1, "entities", "u", a)]


def test_an_empty_v5_changelog_keeps_its_high_mark_through_the_upgrade(tmp_path: Path) -> None:
    path, w = _store(tmp_path)
    a = w.create_entity("a", "t")
    w.close()
    published = _publish_all(path)
    _as_v5(path, high=published + 40)  # v5 had assigned seqs up to here, all published and deleted
    install(path)
    assert head_seq(sqlite3.connect(path)) == published + 40
    w = MemoryWriter(path)
    w.rename(a, "b")
    w.close()
    assert [seq for seq, *_ in _changes(path)] == [published + 41]
    assert uninstall(path) == 1  # the one change, not the mark


def test_a_failed_upgrade_leaves_the_v5_changelog_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, w = _store(tmp_path)
    w.create_entity("a", "t")
    w.close()
    kept = _as_v5(path, high=50)
    conn = sqlite3.connect(path)
    schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    monkeypatch.setattr(install_module, "trigger_sql", lambda table, columns: ["CREATE TRIGGER x BOGUS"])
    with pytest.raises(CaptureError, match="rolled back"):
        install(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == schema
    conn.close()
    assert _changes(path) == kept and head_seq(sqlite3.connect(path)) == 50
