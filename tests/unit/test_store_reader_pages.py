"""The store reader's paged reads of relations in one read transaction (a full comparison): the
relations pointing into a page are found through an ordering of every relation by target built once
per transaction, not by a scan of every relation per page (the store has no index on
``to_entity_id``). Same answers as the scan, on awkward stores too."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from replicator.store.schema import DDL
from replicator.validation.model import Relation
from replicator.validation.store import StoreReader

PAGE = 10


def _store(path: Path, entities: int = 50) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(DDL)
    conn.executemany(
        "INSERT INTO entities (id, name, entity_type, observations, created_at, updated_at) "
        "VALUES (?, ?, 't', '[]', 1, 1)",
        [(i, f"e{i}") for i in range(1, entities + 1)],
    )
    rels = [(i, (i * 7) % entities + 1, "far") for i in range(1, entities + 1)]  # into other pages, both ways
    rels += [(i, i + 1, "near") for i in range(1, entities, 3)]  # inside a page, mostly
    rels += [(5, 5, "loop"), (12, 999, "dangling")]  # an endpoint the store lacks (foreign keys off)
    conn.executemany(
        "INSERT INTO relations (from_entity_id, to_entity_id, relation_type, created_at, updated_at) "
        "VALUES (?, ?, ?, 1, 1)",
        rels,
    )
    return conn


def _paged(reader: StoreReader, entities: int = 50) -> dict[int, Relation]:
    found: dict[int, Relation] = {}
    for start in range(1, entities + 1, PAGE):
        snap = reader.read(list(range(start, start + PAGE)), embeddings=False)
        found.update(snap.relations)
        touching = {r.id for r in snap.relations.values() if {r.from_entity_id, r.to_entity_id} & set(snap.entities)}
        assert touching == set(snap.relations), "a relation touching no entity of the page"
    return found


def _relation_scans(statements: list[str], path: Path) -> int:
    """How many of ``statements`` read every row of relations (their query plans, on a second connection)."""
    conn = sqlite3.connect(path)
    try:
        plans = [conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall() for sql in statements if sql.startswith("SELECT")]
    finally:
        conn.close()
    return sum(1 for plan in plans for row in plan if str(row[3]).startswith("SCAN r") or row[3] == "SCAN relations")


def test_a_paged_read_in_one_transaction_scans_the_relations_once_and_finds_the_same(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    _store(path).close()
    with StoreReader(path) as reader:
        scanned = _paged(reader)  # outside a transaction: one scan per page, as before
        statements: list[str] = []
        reader.conn.set_trace_callback(statements.append)
        with reader.transaction():
            paged = _paged(reader)
        reader.conn.set_trace_callback(None)
    assert paged == scanned and len(paged) == 50 + 17 + 2
    assert _relation_scans(statements, path) == 1 + 1, "every page scanned the relations"  # page 1, the ordering


def test_the_ordering_is_this_transactions_and_a_foreign_target_falls_back_to_scans(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    writer = _store(path)
    with StoreReader(path) as reader:
        with reader.transaction():
            _paged(reader)
        writer.execute(
            "INSERT INTO relations (from_entity_id, to_entity_id, relation_type, created_at, updated_at) "
            "VALUES (40, 3, 'new', 1, 1)"
        )
        with reader.transaction():
            assert any(r.relation_type == "new" for r in _paged(reader).values()), "read through a stale ordering"
        writer.execute("UPDATE relations SET to_entity_id = 'x' WHERE relation_type = 'new'")  # TEXT in a foreign store
        with reader.transaction(), pytest.raises(ValueError, match="invalid literal for int"):
            _paged(reader)  # the scan's own refusal of that row, as without the ordering
