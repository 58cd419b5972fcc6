"""The mcp layout of the graph (sinks/neo4j/layout.py, docs/layouts.md): what mcp-neo4j-memory needs,
written by the pure planner and read back by the same module."""

from __future__ import annotations

import re

import pytest

from replicator.errors import ConfigError
from replicator.sinks.neo4j.cypher import entity_delete_query, entity_upsert_query, relation_upsert_query
from replicator.sinks.neo4j.layout import (
    EXACT_OBSERVATIONS,
    adopted_labels,
    memory_type,
    node_props,
    relation_type_of,
    stored_props,
)
from replicator.sinks.neo4j.model import GraphModel

SERVER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # mcp-neo4j-memory 0.4.5's Entity.type


@pytest.mark.parametrize(
    ("text", "expected"),
    [("person", "person"), ("depends on", "depends_on"), ("user-preference", "user_preference"),
     ("2fa", "_2fa"), ("", "untyped"), (None, "untyped"), ("a  -- b", "a_b"), ("Ünïcode", "_n_code"),
     (b"bl\xffob", "bl_xffob"), ("_x", "_x")],
)  # fmt: skip
def test_memory_type_is_what_the_server_accepts(text: object, expected: str) -> None:
    assert memory_type(text) == expected
    assert SERVER_PATTERN.match(memory_type(text))


def test_mcp_props_keep_every_caxton_field_and_read_back_exactly() -> None:
    props = {"name": "Ada", "entity_type": "user-preference", "observations": ["likes tea"], "confidence": 0.5}
    written = node_props("mcp", props)
    assert written["type"] == "user_preference" and written["entity_type"] == "user-preference"
    assert written["observations"] == ["likes tea"] and written[EXACT_OBSERVATIONS] is None
    assert {k: v for k, v in stored_props("mcp", {k: v for k, v in written.items() if v is not None}).items()} == props


@pytest.mark.parametrize("odd", ["not json", b"\x00\x01", None])
def test_observations_that_are_no_list_become_one_and_are_kept_exactly(odd: object) -> None:
    written = node_props("mcp", {"name": "X", "entity_type": "t", "observations": odd})
    assert isinstance(written["observations"], list) and all(isinstance(o, str) for o in written["observations"])
    assert written[EXACT_OBSERVATIONS] == odd
    assert stored_props("mcp", written)["observations"] == odd


def test_the_caxton_layout_is_unchanged() -> None:
    props = {"name": "Ada", "entity_type": "user-preference", "observations": "odd"}
    assert node_props("caxton", props) == props == stored_props("caxton", props)
    assert "Memory" not in entity_upsert_query(GraphModel())


def test_only_entity_nodes_carry_memory() -> None:
    mcp = GraphModel(layout="mcp")
    assert "SET n:`Memory`" in entity_upsert_query(mcp)
    assert "REMOVE n:`Entity` REMOVE n:`Memory`" in entity_delete_query(mcp)  # a hub being detached
    assert "Memory" not in relation_upsert_query(mcp, "KNOWS")  # placeholders are not memory


def test_an_unknown_layout_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="unknown layout 'graph'"):
        GraphModel(layout="graph")


def test_what_an_mcp_client_writes_reads_back_as_the_store_would_hold_it() -> None:
    # A node mcp-neo4j-memory created: type alone, no entity_type.
    assert stored_props("mcp", {"name": "N", "type": "concept", "observations": ["a"]}) == {
        "name": "N", "entity_type": "concept", "observations": ["a"]}  # fmt: skip
    # type still the sanitised entity_type: the exact text is the entity's type.
    kept = stored_props("mcp", {"entity_type": "user-preference", "type": "user_preference"})
    assert kept == {"entity_type": "user-preference"}
    # type changed by a writer (create_entities of an existing name): the new type is the entity's.
    assert stored_props("mcp", {"entity_type": "user-preference", "type": "habit"})["entity_type"] == "habit"
    # Exact observations hold while the list is still theirs; a writer that changed the list changed them.
    assert stored_props("mcp", {"observations": ["odd"], EXACT_OBSERVATIONS: "odd"})["observations"] == "odd"
    changed = stored_props("mcp", {"observations": ["odd", "added"], EXACT_OBSERVATIONS: "odd"})
    assert changed == {"observations": ["odd", "added"]}


def test_a_relationship_without_its_exact_text_is_named_by_its_type() -> None:
    assert relation_type_of({"relation_type": "works at"}, "WORKS_AT") == "works at"
    assert relation_type_of({}, "MET") == "MET"


def test_only_the_mcp_layout_adopts_memory_nodes() -> None:
    assert adopted_labels("mcp") == ("Memory",) and adopted_labels("caxton") == ()
