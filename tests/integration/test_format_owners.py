"""The code that writes a format reads it back: validate and rollback read the graph through the Neo4j
sink's own reader, built from its GraphModel (renamed properties included).

Regression test for a drift: a reader that hard-coded ``relation_type``/``strength``/``confidence`` saw
every relation (and every entity's confidence and strength) of a sink run with
``--relation-type-property kind`` (and the confidence/strength property options) as different.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest
from click.testing import CliRunner

from replicator.capture.storefile import table_columns
from replicator.capture.triggers import KEY_COLUMN, image_sql
from replicator.cli import cli
from replicator.cutover.options import TargetOptions
from replicator.cutover.targets import divergence
from replicator.events.avro import decode_any, decode_key
from replicator.sinks.batch import Batch, Event
from replicator.sinks.neo4j.destination import Neo4jDestination
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.source.convert import convert_snapshot_row
from replicator.testing.writer import MemoryWriter

STORE_ID = "format-owners-store"


def _snapshot_batch(db: Path, prefix: str) -> Batch:
    """Every entity and relation of ``db`` as the source's snapshot converts them, decoded as a sink does."""
    events: list[Event] = []
    conn = sqlite3.connect(db)
    try:
        for table in ("entities", "relations"):
            columns = table_columns(conn, table)
            key = KEY_COLUMN[table]
            rows = conn.execute(f"SELECT {image_sql(table, columns, 't')} FROM {table} AS t ORDER BY t.{key}")
            for offset, (image,) in enumerate(rows):
                conversion = convert_snapshot_row(table, image, prefix=prefix, store_id=STORE_ID, read_seq=7,
                                                  last=False)  # fmt: skip
                for m in conversion.messages:
                    assert m.value is not None
                    schema, record = decode_any(m.value)
                    events.append(Event(m.topic, 0, offset, decode_key(m.key), schema, record, m.key, m.value))
    finally:
        conn.close()
    return Batch(events, {f"{prefix}.entities": 1, f"{prefix}.relations": 1})


@pytest.fixture
def renamed_graph(tmp_path: Path, graph: Neo4jSettings) -> Iterator[tuple[Path, GraphModel]]:
    """A store, and its copy in Neo4j written by the real sink destination with every mappable property
    renamed (``kind``, ``conf``, ``weight``) under labels of its own."""
    tag = uuid.uuid4().hex[:10]
    model = GraphModel(
        entity_label=f"Entity_{tag}", tombstone_label=f"Tomb_{tag}", position_label=f"Pos_{tag}",
        relation_type_property="kind", confidence_property="conf", strength_property="weight",
    )  # fmt: skip
    db = tmp_path / "memory.db"
    writer = MemoryWriter.create(db)
    try:
        ids = [writer.create_entity(f"e{i}", "concept", [f"fact {i}"], confidence=0.5 + i / 10) for i in range(4)]
        writer.create_relation(ids[0], ids[1], "works with", strength=0.25)
        writer.create_relation(ids[2], ids[3], "depends-on", strength=0.75)
    finally:
        writer.close()
    destination = Neo4jDestination(f"sink-{tag}", graph, model)
    try:
        destination.start()
        destination.apply(_snapshot_batch(db, f"p{tag}"))
    finally:
        destination.close()
    try:
        yield db, model
    finally:
        with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
            for label in (model.entity_label, model.tombstone_label, model.position_label):
                driver.execute_query(f"MATCH (n:`{label}`) DETACH DELETE n", database_=graph.database)


def test_validate_reads_the_graph_through_the_sinks_own_property_names(
    renamed_graph: tuple[Path, GraphModel], graph: Neo4jSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, model = renamed_graph
    monkeypatch.setenv("REPLICATOR_NEO4J_PASSWORD", graph.password or "")
    flags = ["--db", str(db), "--target", "neo4j", "--full", "--no-search", "--neo4j-uri", graph.uri,
             "--neo4j-user", graph.user, "--entity-label", model.entity_label, "--relation-type-property", "kind",
             "--confidence-property", "conf", "--strength-property", "weight"]  # fmt: skip
    result = CliRunner().invoke(cli, ["validate", *flags])
    assert result.exit_code == 0, result.output
    assert "VALID" in result.output


def test_rollback_compares_the_graph_through_the_sinks_own_property_names(
    renamed_graph: tuple[Path, GraphModel], graph: Neo4jSettings, tmp_path: Path
) -> None:
    db, model = renamed_graph
    opts = TargetOptions(
        bootstrap_servers="127.0.0.1:1", topic_prefix="unused", neo4j=graph, neo4j_sink="unused",
        neo4j_group="unused", entity_label=model.entity_label, position_label=model.position_label,
        relation_type_property="kind", confidence_property="conf", strength_property="weight",
        qdrant=QdrantSettings(path=tmp_path / "no-qdrant"), qdrant_api_key=None, collection="unused",
        qdrant_sink="unused", qdrant_group="unused",
    )  # fmt: skip
    assert divergence(db, opts)("neo4j") == []
