"""A node written and read over Bolt on the real Neo4j."""

from __future__ import annotations

import uuid

import neo4j
import pytest
from neo4j.exceptions import AuthError

from replicator.sinks.settings import Neo4jSettings
from replicator.stack.smoke import neo4j_roundtrip


def test_node_written_over_bolt_reads_back(graph: Neo4jSettings) -> None:
    props = neo4j_roundtrip(graph, label="TestSmoke")

    assert props["observations"] == ["written by replicator smoke"]
    assert props["confidence"] == 0.9
    assert len(props["key"]) == 32


def test_write_is_visible_to_a_separate_connection(graph: Neo4jSettings) -> None:
    key = uuid.uuid4().hex
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as writer:
        writer.execute_query("CREATE (:TestSmoke {key: $key, name: 'Ada'})", key=key)
    try:
        with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as reader:
            records, _, _ = reader.execute_query("MATCH (n:TestSmoke {key: $key}) RETURN n.name AS name", key=key)
        assert [r["name"] for r in records] == ["Ada"]
    finally:
        with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as cleaner:
            cleaner.execute_query("MATCH (n:TestSmoke {key: $key}) DELETE n", key=key)


def test_wrong_password_is_refused(graph: Neo4jSettings) -> None:
    if graph.auth() is None:
        pytest.fail("the stack runs Neo4j with authentication off; this test expects it on (the default)")
    with (
        neo4j.GraphDatabase.driver(graph.uri, auth=(graph.user, "definitely-wrong")) as driver,
        pytest.raises(AuthError),
    ):
        driver.verify_connectivity()
