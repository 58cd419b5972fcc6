"""Comparison logic: field equality, key diffs, relation types, vectors, search overlap, report."""

from __future__ import annotations

import json

import pytest

from replicator.embedding import MODEL_NAME
from replicator.sinks.neo4j.model import relationship_type
from replicator.validation.diff import Mismatch, compare, compare_keys, merge
from replicator.validation.errors import MigrateError
from replicator.validation.model import (
    Embedding,
    Entity,
    Relation,
    Snapshot,
    decode_observations,
    entity_from_mapping,
    values_equal,
    vectors_equal,
)
from replicator.validation.search import QueryOverlap, StoreIndex, consistency, overlap
from replicator.validation.validate import ValidationOptions, ValidationReport, expand_targets


def _entity(i: int, **kw: object) -> Entity:
    base: dict[str, object] = {
        "id": i, "name": f"e{i}", "entity_type": "concept", "observations": ("a", "b"),
        "created_at": 1, "updated_at": 2, "metadata": '{"k": 1}',
    }  # fmt: skip
    base.update(kw)
    return Entity(**base)  # type: ignore[arg-type]


def _relation(i: int, a: int, b: int, rtype: str = "depends on", **kw: object) -> Relation:
    return Relation(id=i, from_entity_id=a, to_entity_id=b, relation_type=rtype, created_at=1, updated_at=1, **kw)  # type: ignore[arg-type]


def _snap(backend: str, entities: list[Entity], relations: list[Relation] = (), **kw: object) -> Snapshot:  # type: ignore[assignment]
    return Snapshot(backend, {e.id: e for e in entities}, {r.id: r for r in relations}, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("works_at", "WORKS_AT"), ("depends on", "DEPENDS_ON"), ("relates--to!", "RELATES_TO_"),
     ("3d model", "R_3D_MODEL"), ("", "RELATED_TO"), ("---", "RELATED_TO"), ("Ünïcode ok", "_N_CODE_OK")],
)  # fmt: skip
def test_relationship_type_follows_design_6(text: str, expected: str) -> None:
    assert relationship_type(text) == expected


def test_values_equal_is_exact_keeps_the_storage_class_and_is_sequence_aware() -> None:
    # A value that round-trips compares equal; one that lost its class or its last bit does not.
    assert values_equal(2**63 - 1, 2**63 - 1)
    assert not values_equal(2**53 + 1, float(2**53 + 1)), "an INTEGER that became a REAL"
    assert not values_equal(2, 2.0)
    assert not values_equal(0.1 + 0.2, 0.3), "one bit off"
    assert values_equal(float("inf"), float("inf")) and values_equal(float("nan"), float("nan"))
    assert not values_equal(float("nan"), None), "NaN that became null (a JSON server's doing)"
    assert not values_equal(float("inf"), None)
    assert not values_equal(0.0, -0.0)
    assert values_equal(b"\x00", bytearray(b"\x00")) and not values_equal(b"a", "a")
    assert not values_equal("2.7", 2.7) and not values_equal(None, 1.0)
    assert values_equal(("a", "b"), ["a", "b"])
    assert not values_equal(("a", "b"), ["b", "a"])  # observation order matters
    assert not values_equal(("a",), "a")
    assert not values_equal(None, 0)
    assert not values_equal(True, 1)


def test_observations_that_are_not_a_json_array_of_strings_are_kept_exactly() -> None:
    assert decode_observations('["x", "y"]') == ("x", "y")
    assert decode_observations("not json") == "not json"
    assert decode_observations('{"a": 1}') == '{"a": 1}'
    assert decode_observations('["a", 3]') == '["a", 3]'
    assert decode_observations(b"\xff") == b"\xff"


def test_entity_from_a_destination_mapping() -> None:
    e = entity_from_mapping({"id": 3, "name": "n", "entity_type": "t", "observations": ["o"], "metadata": {"a": 1}})
    assert e.observations == ("o",)
    assert json.loads(e.metadata or "") == {"a": 1}


def test_equal_snapshots_have_no_mismatch() -> None:
    store = _snap("store", [_entity(1), _entity(2)], [_relation(7, 1, 2)])
    dest = _snap("neo4j", [_entity(1), _entity(2)], [_relation(7, 1, 2, graph_type="DEPENDS_ON", from_name="e1")])
    assert compare("neo4j", store, dest, relations=True, embeddings=False) == []


def test_every_kind_of_difference_is_named_by_key_and_field() -> None:
    store = _snap("store", [_entity(1), _entity(2), _entity(3)], [_relation(7, 1, 2), _relation(8, 2, 3)])
    dest = _snap(
        "neo4j",
        [_entity(1, confidence=0.5, observations=("a",)), _entity(2), _entity(4)],
        [_relation(7, 1, 2, graph_type="WRONG"), _relation(9, 1, 4, graph_type="DEPENDS_ON")],
        placeholders={3},
    )
    found = compare("neo4j", store, dest, relations=True, embeddings=False)
    assert [str(m) for m in found] == [
        "neo4j entity 1: different (observations, confidence)",
        "neo4j entity 3: missing - only a placeholder node",
        "neo4j entity 4: extra",
        "neo4j relation 7: different (type)",
        "neo4j relation 8: missing",
        "neo4j relation 9: extra",
    ]
    assert found[2].destination == _entity(4)


def test_vectors_compare_with_tolerance_and_stale_text_is_caught() -> None:
    unit = tuple([1.0] + [0.0] * 383)
    store = _snap("store", [_entity(1), _entity(2), _entity(3)])
    store.embeddings = {1: Embedding(1, unit), 2: Embedding(2, unit)}
    dest = _snap("qdrant", [_entity(1), _entity(2), _entity(3)])
    dest.embeddings = {
        1: Embedding(1, tuple(x * 2 + 1e-7 for x in unit)),  # scaled: same direction
        2: Embedding(2, tuple([0.0, 1.0] + [0.0] * 382)),
        3: Embedding(3, unit, text_sha256="0" * 64),  # computed by the sink from other text
    }
    found = compare("qdrant", store, dest, relations=False, embeddings=True)
    assert [(m.kind, m.key, m.fields) for m in found] == [
        ("embedding", 2, ("vector",)),
        ("embedding", 3, ("text_sha256",)),
    ]
    assert vectors_equal(unit, unit) and not vectors_equal(unit, unit[:-1])


def test_key_diff_and_merge_keep_one_most_informative_mismatch() -> None:
    keyed = compare_keys("neo4j", "entity", [1, 2, 3], [2, 3, 4])
    assert [(m.key, m.problem) for m in keyed] == [(1, "missing"), (4, "extra")]
    detailed = Mismatch("neo4j", "entity", 4, "extra", destination=_entity(4))
    merged = merge([*keyed, detailed])
    assert len(merged) == 2 and merged[1].destination is not None


def test_overlap_and_consistency() -> None:
    assert overlap([1, 2, 3, 4, 5], [1, 2, 3, 4, 6]) == 0.8
    assert overlap([], []) == 1.0
    assert overlap([1, 2], [1, 2, 3]) == pytest.approx(2 / 3)
    results = [QueryOverlap("q", 1.0, True, (), ()), QueryOverlap("r", 0.5, False, (), ())]
    assert consistency(results) == 0.5
    assert consistency([]) == 1.0


def test_store_index_is_cosine_with_a_stable_tie_order() -> None:
    index = StoreIndex({5: [1.0, 0.0], 3: [1.0, 0.0], 9: [0.0, 2.0], 1: [0.6, 0.8]})
    assert index.search([1.0, 0.0], 3) == [3, 5, 1]
    assert index.search([0.0, 1.0], 1) == [9]
    assert StoreIndex({}).search([1.0], 5) == []


def test_report_json_names_every_key_and_options_are_checked() -> None:
    report = ValidationReport(
        ok=False, targets=("neo4j",), mode="sample", sampled=2,
        mismatches=[Mismatch("neo4j", "entity", 3, "different", ("name",))],
        problems=["1 mismatched keys"],
    )  # fmt: skip
    data = json.loads(report.to_json())
    assert data["ok"] is False
    assert data["mismatches"] == [
        {"target": "neo4j", "kind": "entity", "key": 3, "problem": "different", "fields": ["name"]}
    ]
    assert "mismatch: neo4j entity 3: different (name)" in report.to_text()
    assert expand_targets(["hybrid", "neo4j"]) == ("neo4j", "qdrant")
    with pytest.raises(MigrateError):
        expand_targets(["mysql"])
    with pytest.raises(MigrateError, match="threshold"):
        ValidationOptions(query_threshold=1.5)
    assert ValidationOptions(fast=True).mode == "fast"


def test_a_point_embedded_with_another_model_is_a_difference() -> None:
    """After a cutover the runtime may re-embed a point with its own model: same text, same payload,
    another vector space. Rollback's full comparison must see it."""
    unit = tuple([1.0] + [0.0] * 383)
    store = _snap("store", [_entity(1), _entity(2)])
    store.embeddings = {1: Embedding(1, unit, model_version=MODEL_NAME)}
    dest = _snap("qdrant", [_entity(1), _entity(2)])
    dest.embeddings = {
        1: Embedding(1, unit, model_version=MODEL_NAME),
        2: Embedding(2, unit, model_version="all-mpnet-base-v2"),  # computed elsewhere, another model
    }
    found = compare("qdrant", store, dest, relations=False, embeddings=True)
    assert [(m.kind, m.key, m.fields) for m in found] == [("embedding", 2, ("embedding_model",))]
    assert "all-mpnet-base-v2" in found[0].detail
