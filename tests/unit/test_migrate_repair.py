"""Which keys a repair re-emits (pure), and that it refuses without capture's resync."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from replicator.capture import install
from replicator.testing.writer import MemoryWriter
from replicator.validation.diff import Mismatch
from replicator.validation.errors import MigrateError
from replicator.validation.model import Entity, Relation
from replicator.validation.repair import apply_repair, plan_repair


def test_missing_and_different_keys_are_resynced_extras_are_re_deleted() -> None:
    extra_entity = Entity(9, "ghost", "concept", ("x",), created_at=1, updated_at=1)
    extra_relation = Relation(40, 1, 9, "knows", created_at=1, updated_at=1, from_name="a", to_name="ghost")
    plan = plan_repair(
        [
            Mismatch("neo4j", "entity", 1, "missing"),
            Mismatch("qdrant", "entity", 1, "different", ("name",)),  # same key, two targets: once
            Mismatch("neo4j", "entity", 2, "different", ("confidence",)),
            Mismatch("neo4j", "relation", 30, "missing"),
            Mismatch("qdrant", "embedding", 3, "different", ("vector",)),  # the store keeps its vector
            Mismatch("qdrant", "embedding", 4, "different", ("text_sha256",)),  # computed by the sink
            Mismatch("neo4j", "entity", 9, "extra", destination=extra_entity),
            Mismatch("qdrant", "entity", 9, "extra", destination=extra_entity),
            Mismatch("neo4j", "relation", 40, "extra", destination=extra_relation),
            Mismatch("neo4j", "entity", 11, "extra"),  # found by the key scan only
        ],
        store_embedding_ids=[3],
    )
    assert plan.resync == {"embeddings": [3], "entities": [1, 2, 4], "relations": [30]}
    assert sorted(plan.resync_deleted) == ["entities", "relations"]
    assert plan.resync_deleted["entities"][9]["observations"] == json.dumps(["x"])
    assert plan.resync_deleted["relations"][40]["to_entity_name"] == "ghost"
    assert plan.unrepairable == ["neo4j entity 11: extra, but its destination copy was not read"]
    assert plan.to_dict()["resync_deleted"] == {"entities": [9], "relations": [40]}


def test_no_mismatch_plans_nothing() -> None:
    assert plan_repair([], []).empty


def test_apply_writes_changelog_rows_the_source_will_publish(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    writer = MemoryWriter.create(db)
    alice = writer.create_entity("alice", "person", ["likes tea"])
    writer.close()
    plan = plan_repair(
        [Mismatch("neo4j", "entity", alice, "missing"),
         Mismatch("neo4j", "entity", 5, "extra", destination=Entity(5, "ghost", "t", ()))],
        [],
    )  # fmt: skip
    with pytest.raises(MigrateError, match="capture is not installed"):
        apply_repair(db, plan)
    install.install(db)

    assert apply_repair(db, plan) == {"resync": 1, "resync_deleted": 1}
    conn = sqlite3.connect(db)
    changes = "FROM _replicator_changelog WHERE op <> 'm' ORDER BY seq"  # the install's mark is no change
    rows = conn.execute(f"SELECT tbl, op, row_id, before, after {changes}").fetchall()
    assert [(t, op, key) for t, op, key, _, _ in rows] == [("entities", "u", alice), ("entities", "d", 5)]
    assert json.loads(rows[0][4])["name"] == "alice" and json.loads(rows[0][3]) == json.loads(rows[0][4])
    assert json.loads(rows[1][3])["name"] == "ghost" and rows[1][4] is None
