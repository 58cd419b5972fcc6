"""The cutover's counts under its fence (``GraphReader.fenced_counts``) agree with the full counts
(``counts``) on a graph laid out as the sink writes it: entities, a placeholder standing where an
entity should be, relationships; and a relationship an MCP client wrote without a Caxton id makes
the fenced count one more (the cutover stops: safe). They come from Neo4j's count store and the
``_placeholder`` index, so they cost the same at 1M relationships as at 3 (the whole-migration bench
spent 1.7 s of its pause counting them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import neo4j
import pytest

from replicator.sinks.neo4j import applier
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.neo4j.reader import GraphReader
from replicator.sinks.settings import Neo4jSettings


@pytest.fixture
def model(graph: Neo4jSettings) -> Iterator[GraphModel]:
    tag = uuid.uuid4().hex[:8]
    model = GraphModel(entity_label=f"Entity_{tag}", tombstone_label=f"Tomb_{tag}", position_label=f"Pos_{tag}")
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        for statement in applier.schema_statements(model):
            driver.execute_query(statement, database_=graph.database)
        yield model
        driver.execute_query(f"MATCH (n:`{model.entity_label}`) DETACH DELETE n", database_=graph.database)
        for statement in applier.schema_statements(model):
            if statement.startswith("CREATE INDEX") or statement.startswith("CREATE CONSTRAINT"):
                kind, name = statement.split()[1], statement.split()[2]
                driver.execute_query(f"DROP {kind} {name} IF EXISTS", database_=graph.database)


def _counts(graph: Neo4jSettings, model: GraphModel) -> tuple[dict[str, int], dict[str, int]]:
    reader = GraphReader.connect(graph, model)
    try:
        return reader.counts(), reader.fenced_counts()
    finally:
        reader.close()


def test_fenced_counts_equal_the_full_counts(graph: Neo4jSettings, model: GraphModel) -> None:
    lab = f"`{model.entity_label}`"
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        driver.execute_query(
            f"CREATE (a:{lab} {{id: 1, name: 'a'}}), (b:{lab} {{id: 2, name: 'b'}}), (c:{lab} {{id: 3, name: 'c'}}), "
            f"(p:{lab} {{id: 4, _placeholder: true}}), "
            "(a)-[:KNOWS {id: 10}]->(b), (b)-[:USES {id: 11}]->(c), (c)-[:KNOWS {id: 12}]->(p)",
            database_=graph.database,
        )
        full, fenced = _counts(graph, model)
        assert full == fenced == {"entities": 3, "placeholders": 1, "relations": 3}
        driver.execute_query(
            f"MATCH (p:{lab} {{id: 4}}) REMOVE p._placeholder SET p.name = 'd'", database_=graph.database
        )
        full, fenced = _counts(graph, model)
        assert full == fenced == {"entities": 4, "placeholders": 0, "relations": 3}


def test_a_relationship_without_a_caxton_id_counts_under_the_fence(graph: Neo4jSettings, model: GraphModel) -> None:
    lab = f"`{model.entity_label}`"
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        driver.execute_query(
            f"CREATE (a:{lab} {{id: 1, name: 'a'}}), (b:{lab} {{id: 2, name: 'b'}}), (a)-[:KNOWS {{id: 10}}]->(b), "
            "(a)-[:likes]->(b)",  # written by an MCP client: no id
            database_=graph.database,
        )
    full, fenced = _counts(graph, model)
    assert full["relations"] == 1
    assert fenced["relations"] == 2
