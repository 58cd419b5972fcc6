"""Applying Neo4j's changelog to a real SQLite store that refuses the runtime's writes (as after a
cutover): the reverse writes pass the refusal, are not captured as forward changes, keep the store's
constraints, and commit with their position (idempotent)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from replicator.capture.install import install
from replicator.capture.triggers import CHANGELOG, head_seq
from replicator.cutover import fence
from replicator.reverse.apply import apply, read_position
from replicator.reverse.aside import parked_rows
from replicator.reverse.changelog import Change
from replicator.sinks.neo4j.model import GraphModel
from replicator.testing.writer import MemoryWriter

NS = "Entity"
MODEL = GraphModel()


def fake_embed(texts: Sequence[str]) -> tuple[list[bytes], str]:
    return [t.encode()[:16].ljust(16, b"\0") for t in texts], "fake-model"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "memory.db"
    writer = MemoryWriter.create(db)
    alice = writer.create_entity("alice", "person", ["likes tea"])
    bob = writer.create_entity("bob", "person", [])
    writer.create_relation(alice, bob, "knows")
    writer.close()
    install(db)
    held = fence.acquire(db, timeout_s=1)
    held.refuse_writes_and_release(fence.refusal_message("neo4j", "now"))
    return db


def _conn(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def entity(seq: int, entity_id: int, n: int = 0, **props: object) -> Change:
    return Change(seq, n, 1_000 + seq, "entity", "u", entity_id, {"id": entity_id, **props})


def test_an_entity_created_in_neo4j_reaches_the_store_past_the_refusal_and_is_not_captured(store: Path) -> None:
    conn = _conn(store)
    head = head_seq(conn)
    changelog_rows = conn.execute(f"SELECT count(*) FROM {CHANGELOG}").fetchone()[0]
    done = apply(conn, NS, [entity(1, 50, name="carol", entity_type="person", observations=["a", "b"],
                                   confidence=0.5)], MODEL, fake_embed)  # fmt: skip
    assert done.rows == 1 and done.embedded == 1 and not done.parked
    row = conn.execute("SELECT name, entity_type, observations, confidence, created_at FROM entities WHERE id = 50")
    assert row.fetchone() == ("carol", "person", json.dumps(["a", "b"]), 0.5, 1001)
    assert conn.execute("SELECT model_version FROM embeddings WHERE entity_id = 50").fetchone() == ("fake-model",)
    assert head_seq(conn) == head, "the reverse write was captured as a forward change"
    assert conn.execute(f"SELECT count(*) FROM {CHANGELOG}").fetchone()[0] == changelog_rows
    assert read_position(conn, NS) is not None and read_position(conn, NS).seq == 1  # type: ignore[union-attr]
    with pytest.raises(sqlite3.IntegrityError, match="memory store moved to neo4j"):
        MemoryWriter(store).create_entity("dave", "person")  # the runtime is still refused


def test_updates_relations_and_cascading_deletes(store: Path) -> None:
    conn = _conn(store)
    apply(conn, NS, [
        entity(1, 1, name="alice2", entity_type="person", observations=["likes tea", "likes cake"]),
        Change(2, 0, 1_002, "relation", "u", 9, {"id": 9, "relation_type": "works with"}, 2, 1, "WORKS_WITH"),
        Change(3, 0, 1_003, "relation", "u", 10, {"id": 10}, 1, 2, "MANAGES"),
    ], MODEL, fake_embed)  # fmt: skip
    assert conn.execute("SELECT name, observations FROM entities WHERE id = 1").fetchone() == (
        "alice2", json.dumps(["likes tea", "likes cake"]))  # fmt: skip
    rels = conn.execute("SELECT id, from_entity_id, to_entity_id, relation_type FROM relations ORDER BY id").fetchall()
    assert rels[-2:] == [(9, 2, 1, "works with"), (10, 1, 2, "MANAGES")]
    apply(conn, NS, [Change(4, 0, 1_004, "relation", "d", 9), Change(5, 0, 1_005, "entity", "d", 1)], MODEL, fake_embed)
    assert conn.execute("SELECT count(*) FROM entities WHERE id = 1").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM relations").fetchone() == (0,), "ON DELETE CASCADE"
    assert conn.execute("SELECT count(*) FROM embeddings WHERE entity_id = 1").fetchone() == (0,)


def test_rows_the_store_refuses_are_parked_by_name_and_the_rest_applies(store: Path) -> None:
    conn = _conn(store)
    done = apply(conn, NS, [
        entity(1, 60, name="alice", entity_type="person"),  # name taken by entity 1
        Change(1, 1, 1_001, "relation", "u", 11, {"id": 11, "relation_type": "knows"}, 1, 2, "KNOWS"),  # same triple
        entity(1, 61, n=2, name="erin", entity_type="person"),
        entity(2, 62, entity_type="person"),  # no name
    ], MODEL, fake_embed)  # fmt: skip
    assert len(done.parked) == 3
    reasons = [reason for _, _, _, reason in parked_rows(conn, NS)]
    assert "UNIQUE constraint failed: entities.name" in reasons[0]
    assert "UNIQUE constraint failed" in reasons[1]
    assert "no name" in reasons[2]
    assert conn.execute("SELECT name FROM entities WHERE id = 61").fetchone() == ("erin",)
    assert read_position(conn, NS).seq == 2  # type: ignore[union-attr]


def test_a_later_change_of_a_parked_row_that_applies_replaces_what_was_set_aside(store: Path) -> None:
    """Two Neo4j entities with one name (a retried CREATE): the second is set aside until a change to
    it applies (renamed, or deleted); then the store holds the row as Neo4j does and nothing is
    missing. A row no later change touched stays set aside."""
    conn = _conn(store)
    apply(conn, NS, [entity(1, 60, name="alice", entity_type="person"),
                     entity(1, 61, n=1, name="bob", entity_type="person")], MODEL, fake_embed)  # fmt: skip
    assert [(kind, row) for _, kind, row, _ in parked_rows(conn, NS)] == [("entity", 60), ("entity", 61)]
    renamed, unrelated = entity(2, 60, name="alice 2", entity_type="person"), entity(3, 1, name="c", entity_type="x")
    apply(conn, NS, [renamed, unrelated], MODEL, None)
    assert [(kind, row) for _, kind, row, _ in parked_rows(conn, NS)] == [("entity", 61)]
    assert conn.execute("SELECT name FROM entities WHERE id = 60").fetchone() == ("alice 2",)
    apply(conn, NS, [Change(4, 0, 1_004, "entity", "d", 61)], MODEL, None)
    assert parked_rows(conn, NS) == [], "deleted in Neo4j: nothing of it is missing from the store"


def test_applying_the_same_transactions_again_changes_nothing(store: Path) -> None:
    conn = _conn(store)
    changes = [entity(1, 70, name="x", entity_type="t"), Change(2, 0, 1_002, "entity", "d", 70)]
    apply(conn, NS, changes[:1], MODEL, fake_embed)
    apply(conn, NS, changes, MODEL, fake_embed)
    again = apply(conn, NS, changes, MODEL, fake_embed)
    assert again.rows == 0 and again.position is None
    assert conn.execute("SELECT count(*) FROM entities WHERE id = 70").fetchone() == (0,)


def test_a_failure_rolls_back_rows_and_position_together(store: Path) -> None:
    conn = _conn(store)

    def broken(texts: Sequence[str]) -> tuple[list[bytes], str]:
        raise RuntimeError("model gone")

    with pytest.raises(RuntimeError):
        apply(conn, NS, [entity(1, 80, name="y", entity_type="t")], MODEL, broken)
    assert conn.execute("SELECT count(*) FROM entities WHERE id = 80").fetchone() == (0,)
    assert read_position(conn, NS) is None
    with pytest.raises(sqlite3.IntegrityError, match="memory store moved"):
        MemoryWriter(store).create_entity("zed", "person")  # the marker row never committed


def test_the_mcp_layout_reads_what_mcp_clients_write_as_its_reader_does(store: Path) -> None:
    """A :Memory node mcp-neo4j-memory created (type alone, the id the plugin gave it), a migrated entity
    whose type the server changed, and a relationship named by its type alone."""
    conn = _conn(store)
    mcp = GraphModel(layout="mcp")
    apply(conn, NS, [
        entity(1, 60, name="new memory", type="concept", observations=["told"]),
        entity(2, 1, name="alice", entity_type="person", type="habit", observations=["likes tea"]),
        entity(3, 2, name="bob", entity_type="odd type", type="odd_type", observations=["x"],
               caxton_observations="x"),
        Change(4, 0, 1_004, "relation", "u", 12, {"id": 12}, 60, 1, "KNOWS_ABOUT"),
    ], mcp, fake_embed)  # fmt: skip
    rows = dict((r[0], r[1:]) for r in conn.execute("SELECT id, name, entity_type, observations FROM entities"))
    assert rows[60] == ("new memory", "concept", '["told"]')
    assert rows[1] == ("alice", "habit", '["likes tea"]')
    assert rows[2] == ("bob", "odd type", "x")
    assert conn.execute("SELECT relation_type FROM relations WHERE id = 12").fetchone() == ("KNOWS_ABOUT",)
