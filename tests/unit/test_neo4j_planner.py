"""The Neo4j planner without a server: type mapping, quoting, collapsing per row, poison detection."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.errors import ConfigError
from replicator.events.avro import ENTITY_CHANGE, HEARTBEAT, RELATION_CHANGE
from replicator.events.headers import Parsed
from replicator.sinks.batch import Batch, Event, StoreMismatch
from replicator.sinks.errors import PoisonEvent
from replicator.sinks.neo4j.cypher import relation_upsert_query
from replicator.sinks.neo4j.model import GraphModel, quote, relationship_type
from replicator.sinks.neo4j.planner import plan


def _src(seq: int, store: str = "s") -> dict[str, Any]:
    return {"connector": "c", "version": "t", "store": store, "table": "x", "seq": seq, "snapshot": "false",
            "ts_ms": 1}  # fmt: skip


def _tombstone(topic: str, key: int, seq: int | None, offset: int = 99) -> Event:
    """A null-valued record as the runner decodes it: its headers name the table and the delete's seq."""
    table = topic.rsplit(".", 1)[1]
    return Event(topic, 0, offset, key, None, None, b"k", None, Parsed(table=table, seq=seq))


def _entity(i: int, seq: int, op: str = "c", name: str = "n") -> Event:
    row = {"id": i, "name": name, "entity_type": "t", "observations": ["o"], "confidence": 1.0, "strength": 1.0,
           "version": 1, "created_at": 1, "updated_at": 1, "valid_from": None, "valid_to": None, "metadata": None,
           "extra": {"added": "3"}}  # fmt: skip
    record = {"op": op, "before": row if op in ("u", "d") else None, "after": None if op == "d" else row,
              "source": _src(seq), "ts_ms": 1}  # fmt: skip
    return Event("p.entities", 0, seq, i, ENTITY_CHANGE, record)


def _relation(i: int, seq: int, rtype: str, op: str = "c", frm: int = 1) -> Event:
    row = {"id": i, "from_entity_id": frm, "to_entity_id": 2, "relation_type": rtype, "strength": 0.5,
           "confidence": 1.0, "created_at": 1, "updated_at": 1, "valid_from": None, "valid_to": None,
           "metadata": None, "extra": None}  # fmt: skip
    record = {"op": op, "before": row if op in ("u", "d") else None, "after": None if op == "d" else row,
              "source": _src(seq), "ts_ms": 1}  # fmt: skip
    return Event("p.relations", 0, seq, i, RELATION_CHANGE, record)


@pytest.mark.parametrize(
    ("text", "mapped"),
    [("depends on", "DEPENDS_ON"), ("works-at", "WORKS_AT"), ("2nd", "R_2ND"), ("", "RELATED_TO"), ("--", "RELATED_TO"),
     ("知る", "RELATED_TO"), ("x`]->() DETACH DELETE n //", "X_DETACH_DELETE_N_"), ("works_at", "WORKS_AT")],
)  # fmt: skip
def test_relationship_type_mapping(text: str, mapped: str) -> None:
    assert relationship_type(text) == mapped


@settings(max_examples=50)
@given(st.text())
def test_mapped_types_are_plain_identifiers_and_quoting_is_closed(text: str) -> None:
    mapped = relationship_type(text)
    assert mapped and all(c.isascii() and (c.isalnum() or c == "_") for c in mapped) and not mapped[0].isdigit()
    quoted = quote(text)
    assert quoted.startswith("`") and quoted.endswith("`") and "`" not in quoted[1:-1].replace("``", "")


def test_only_the_last_change_per_row_is_planned_and_endpoint_pairs_are_collected() -> None:
    heartbeat = Event("p.entities", 1, 9, -1, HEARTBEAT, {"source": _src(9), "ts_ms": 1})
    events = [_entity(1, 1), _entity(1, 2, "u", "renamed"), _relation(5, 3, "a b"), _relation(5, 4, "a b", "u", frm=1),
              _entity(2, 5), _entity(2, 6, "d"), heartbeat, Event("p.entities", 0, 10, 2, None, None)]  # fmt: skip
    todo = plan(Batch(events, {"p.entities": 3}), GraphModel())

    assert [(r["id"], r["seq"], r["props"]["name"]) for r in todo.entity_upserts] == [(1, 2, "renamed")]
    assert todo.entity_upserts[0]["props"]["extra"] == '{"added": "3"}'
    assert todo.entity_deletes == [{"id": 2, "seq": 6}]
    assert list(todo.relation_upserts) == ["A_B"]
    assert todo.relation_upserts["A_B"][0]["props"]["relation_type"] == "a b"
    assert todo.relation_upserts["A_B"][0]["pairs"] == [[1, 2]]
    assert todo.store == "s"
    assert todo.size == 3


def test_property_names_follow_the_mapping() -> None:
    model = GraphModel(relation_type_property="type", confidence_property="conf", strength_property="weight")
    todo = plan(Batch([_relation(5, 3, "knows")], {}), model)
    props = todo.relation_upserts["KNOWS"][0]["props"]
    assert props["type"] == "knows" and props["weight"] == 0.5 and props["conf"] == 1.0
    assert "relation_type" not in props


def test_hostile_type_is_quoted_and_its_text_is_only_a_parameter() -> None:
    todo = plan(Batch([_relation(5, 3, "x`]->() DETACH DELETE n //")], {}), GraphModel())
    statements = todo.statements(GraphModel())
    assert "DETACH DELETE n //" not in statements[-1].query
    assert "`X_DETACH_DELETE_N_`" in relation_upsert_query(GraphModel(), "X_DETACH_DELETE_N_")


@pytest.mark.parametrize(
    "record_change",
    [lambda r: r.update(after=None), lambda r: r.update(op="x"), lambda r: r["after"].update(id=77)],
)
def test_envelope_violations_are_poison_with_their_index(record_change: Any) -> None:
    bad = _entity(3, 3)
    assert bad.record is not None
    record_change(bad.record)
    with pytest.raises(PoisonEvent) as caught:
        plan(Batch([_entity(1, 1), bad], {}), GraphModel())
    assert caught.value.index == 1


def test_model_refuses_odd_names() -> None:
    with pytest.raises(ConfigError, match="plain identifier"):
        GraphModel(entity_label="a b")
    with pytest.raises(ConfigError, match="must differ"):
        GraphModel(entity_label="X", tombstone_label="X")


def test_a_tombstone_is_a_delete_at_its_header_seq() -> None:
    """What compaction leaves of a deleted key: no value, only the key and the delete's seq."""
    todo = plan(Batch([_tombstone("p.entities", 7, 40), _tombstone("p.relations", 8, 39)], {}), GraphModel())
    assert todo.entity_deletes == [{"id": 7, "seq": 40}]
    assert todo.relation_deletes == [] and todo.relation_deletes_unlocated == [{"id": 8, "seq": 39, "pairs": []}]
    assert todo.store is None


def test_a_tombstone_after_its_delete_keeps_the_delete_s_endpoints() -> None:
    todo = plan(Batch([_relation(8, 39, "knows", "d", frm=3), _tombstone("p.relations", 8, 39)], {}), GraphModel())
    assert todo.relation_deletes == [{"id": 8, "seq": 39, "pairs": [[3, 2]]}]
    assert todo.relation_deletes_unlocated == []


def test_a_tombstone_without_a_seq_is_counted_not_applied_and_a_change_after_it_wins() -> None:
    events = [_tombstone("p.entities", 7, None), _tombstone("p.embeddings", 7, 12), _tombstone("p.entities", 9, 3),
              _entity(9, 5)]  # fmt: skip
    todo = plan(Batch(events, {}), GraphModel())
    assert todo.unusable_tombstones == 1
    assert todo.entity_deletes == [] and [r["id"] for r in todo.entity_upserts] == [9]


def test_a_batch_of_two_stores_is_refused() -> None:
    other = _entity(4, 4)
    assert other.record is not None
    other.record["source"] = _src(4, store="another")
    with pytest.raises(StoreMismatch, match="2 stores"):
        plan(Batch([_entity(1, 1), other], {}), GraphModel())


def test_relation_upserts_are_one_statement_when_types_are_parameters() -> None:
    events = [_relation(5, 1, "knows"), _relation(6, 2, "works-at"), _relation(7, 3, "knows"), _entity(1, 4)]
    todo = plan(Batch(events, {"p.relations": 3}), GraphModel())

    per_type = [s for s in todo.statements(GraphModel()) if "CREATE (a)-[r:" in s.query]
    one = [s for s in todo.statements(GraphModel(), dynamic_types=True) if "CREATE (a)-[r:" in s.query]

    assert [len(s.rows) for s in per_type] == [2, 1] and "`KNOWS`" in per_type[0].query
    assert len(one) == 1 and "$(row.type)" in one[0].query
    assert sorted((r["id"], r["type"]) for r in one[0].rows) == [(5, "KNOWS"), (6, "WORKS_AT"), (7, "KNOWS")]


def test_upserts_newer_than_every_tombstone_skip_the_tombstone_reads() -> None:
    # Tombstones up to seq 5 exist: the upserts at seq 3 and 5 may be stopped by one, those at 6 and 7 not.
    events = [_entity(1, 3), _entity(2, 6), _relation(5, 5, "knows"), _relation(6, 7, "knows")]
    todo = plan(Batch(events, {}), GraphModel(), newest_tombstone=5)

    assert {r["id"]: r["guard"] for r in todo.entity_upserts} == {1: True, 2: False}
    assert {r["id"]: r["guard"] for r in todo.relation_upserts["KNOWS"]} == {5: True, 6: False}
    statements = todo.statements(GraphModel(), dynamic_types=True)
    reads = [("OPTIONAL MATCH" in s.query, [r["id"] for r in s.rows]) for s in statements]
    assert reads == [(True, [1]), (False, [2]), (True, [5]), (False, [6])]


def test_without_a_known_newest_tombstone_every_upsert_reads_its_tombstones() -> None:
    todo = plan(Batch([_entity(1, 3), _relation(5, 4, "knows")], {}), GraphModel())
    assert all("OPTIONAL MATCH" in s.query for s in todo.statements(GraphModel(), dynamic_types=True))


def test_a_relation_whose_endpoint_the_batch_deletes_later_reads_the_tombstones() -> None:
    # No tombstone before the batch, but its delete of entity 2 (seq 8) must stop relation 5 (seq 4),
    # and the delete of entity 1 at seq 3 must not stop relation 6 (seq 9).
    events = [_entity(1, 3, "d"), _relation(5, 4, "knows"), _relation(6, 9, "knows", frm=1), _entity(2, 8, "d")]
    todo = plan(Batch(events, {}), GraphModel(), newest_tombstone=0)
    assert {r["id"]: r["guard"] for r in todo.relation_upserts["KNOWS"]} == {5: True, 6: False}


def test_a_graph_read_back_carries_the_store_column_names_renamed_or_not() -> None:
    props = {"id": 1, "weight": 0.5, "kind": "knows", "confidence": 0.9, "_seq": 3}
    renamed = GraphModel(strength_property="weight", relation_type_property="kind")
    assert renamed.columns(props) == {"id": 1, "strength": 0.5, "relation_type": "knows", "confidence": 0.9, "_seq": 3}
    plain = {"id": 1, "strength": 0.5, "relation_type": "knows", "_seq": 3}
    assert GraphModel().columns(plain) == plain and GraphModel().columns(plain) is not plain
