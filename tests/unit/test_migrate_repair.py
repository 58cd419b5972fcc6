"""Which keys a repair re-emits (pure), and that it refuses without capture's resync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from replicator.capture import install
from replicator.migrate.diff import Mismatch
from replicator.migrate.errors import MigrateError
from replicator.migrate.model import Entity, Relation
from replicator.migrate.repair import apply_repair, plan_repair
from replicator.store.writer import MemoryWriter


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


def test_apply_refuses_when_capture_lacks_resync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(install, "resync", raising=False)
    with pytest.raises(MigrateError, match="resync"):
        apply_repair(tmp_path / "x.db", plan_repair([Mismatch("neo4j", "entity", 1, "missing")], []))


def test_apply_calls_capture_with_the_agreed_signatures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "memory.db"
    MemoryWriter.create(db).close()
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(install, "resync", lambda conn, table, ids: calls.append(("resync", table, ids)), raising=False)
    monkeypatch.setattr(
        install, "resync_deleted",
        lambda conn, table, ids, images: calls.append(("resync_deleted", table, ids, sorted(images))), raising=False,
    )  # fmt: skip
    plan = plan_repair(
        [Mismatch("neo4j", "entity", 1, "missing"),
         Mismatch("neo4j", "entity", 5, "extra", destination=Entity(5, "x", "t", ()))],
        [],
    )  # fmt: skip
    with pytest.raises(MigrateError, match="capture is not installed"):
        apply_repair(db, plan)
    install.install(db)

    assert apply_repair(db, plan) == {"resync": 1, "resync_deleted": 1}
    assert calls == [("resync", "entities", [1]), ("resync_deleted", "entities", [5], [5])]
