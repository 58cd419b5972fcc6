"""resync / resync_deleted: fresh changelog rows built by the triggers' own image SQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from replicator.capture.install import install
from replicator.capture.resync import resync, resync_deleted
from replicator.capture.storefile import CaptureError, open_store
from replicator.capture.triggers import CHANGELOG
from replicator.source.store import StoreReader
from replicator.testing.writer import MemoryWriter


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "memory.db"
    w = MemoryWriter.create(path)
    a = w.create_entity("a", "t", ["line\u0001one", 'q"'], embedding=[0.25, 0.5])
    w.create_relation(a, w.create_entity("b", "t"), "likes")
    w.close()
    install(path)
    w = MemoryWriter(path)  # the creations again, now captured
    w.rename(a, "a2")
    w.close()
    c = open_store(path)
    yield c
    c.close()


def _path(conn: sqlite3.Connection) -> Path:
    return Path(str(conn.execute("PRAGMA database_list").fetchone()[2]))


def rows(conn: sqlite3.Connection) -> list[tuple[int, str, str, int, str | None, str | None]]:
    return conn.execute(f"SELECT seq, tbl, op, row_id, before, after FROM {CHANGELOG} ORDER BY seq").fetchall()


@pytest.mark.parametrize("table", ["entities", "relations", "embeddings"])
def test_resync_appends_u_rows_identical_to_what_the_trigger_captures(conn: sqlite3.Connection, table: str) -> None:
    key = "entity_id" if table == "embeddings" else "id"
    ids = [int(r[0]) for r in conn.execute(f"SELECT {key} FROM {table}")]
    head = rows(conn)[-1][0]

    seqs = resync(conn, table, [*ids, 999])

    assert len(seqs) == len(ids) and min(seqs) > head
    fresh = rows(conn)[-len(ids) :]
    assert all(op == "u" and before == after for _, _, op, _, before, after in fresh)
    # The image the source reads for the same rows while publishing (the triggers record keys only).
    conn.execute(f"DELETE FROM {CHANGELOG}")
    conn.execute(f"UPDATE {table} SET created_at = created_at + 1")
    conn.execute(f"UPDATE {table} SET created_at = created_at - 1")
    conn.commit()
    reader = StoreReader(_path(conn))
    try:
        read = {r.row_id: reader.image_of(table, r.row_id) for r in reader.changelog_after(0, 100)}
    finally:
        reader.close()
    assert {r[3]: r[5] for r in fresh} == read
    assert all(json.loads(str(image)) for image in read.values())


def test_resync_deleted_appends_d_rows_with_the_given_before_images(conn: sqlite3.Connection) -> None:
    seqs = resync_deleted(conn, "entities", [41, 42], [{"name": "gone", "id": 0}, None])

    fresh = rows(conn)[-2:]
    assert [r[0] for r in fresh] == seqs
    assert [(r[2], r[3], r[5]) for r in fresh] == [("d", 41, None), ("d", 42, None)]
    assert json.loads(str(fresh[0][4])) == {"name": "gone", "id": 41}
    assert json.loads(str(fresh[1][4])) == {"id": 42}


def test_resync_deleted_refuses_a_live_row_and_appends_nothing(conn: sqlite3.Connection) -> None:
    count = len(rows(conn))
    with pytest.raises(CaptureError, match="still exist"):
        resync_deleted(conn, "entities", [77, 1], [None, None])
    with pytest.raises(CaptureError, match="2 ids but 1 before"):
        resync_deleted(conn, "entities", [77, 78], [None])
    assert len(rows(conn)) == count


def test_resync_of_an_unknown_table_is_refused(conn: sqlite3.Connection) -> None:
    with pytest.raises(CaptureError, match="not a captured table"):
        resync(conn, "sqlite_master", [1])
