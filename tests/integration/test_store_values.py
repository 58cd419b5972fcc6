"""Every value the writer can put in the store (issue 17, item 4), from the store through the real
pipeline (triggers, source, Kafka, both sinks) into Neo4j and Qdrant local mode, compared with what
SQLite really stores: ``typeof()`` of each column may be integer, real, text, blob or null whatever the
declared type (inf, -inf, 2**63-1 and -2**63 included; NaN is stored as NULL). A row no event can carry
exactly (TEXT that is not UTF-8) is parked and named, and the rows after it flow."""

from __future__ import annotations

import math
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from neo4j import GraphDatabase
from qdrant_client import QdrantClient

from replicator.capture.install import install
from replicator.embedding import MODEL_NAME
from replicator.events.values import embedding_text
from replicator.sinks.qdrant.points import entity_values
from replicator.sinks.settings import Neo4jSettings
from replicator.store.schema import ENTITY_COLUMNS, RELATION_COLUMNS
from replicator.testing.workload import hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings
from replicator.validation.model import values_equal
from replicator.validation.validate import validate_store
from tests.integration.test_pipeline import Stage

NOT_NULL = {"name", "entity_type", "observations", "created_at", "updated_at", "relation_type"}
#: One value per storage class (and the awkward ones); SQLite's affinity decides what is stored, e.g.
#: the TEXT '2.7' becomes the REAL 2.7 in an INTEGER column and stays TEXT in a TEXT column.
SWEEP: list[object] = [
    None, 0, 2**63 - 1, -(2**63), 2**53 + 1, 2.7, float("inf"), float("-inf"), float("nan"), 1.4523142177899403e308,
    5e-324, "2.7", "12", "abc", "", "nul\x00inside", b"", b"\x00\xff", b'["blob"]',
]  # fmt: skip
values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=10),
    st.binary(max_size=8),
    st.sampled_from(SWEEP),
)
row_values = st.fixed_dictionaries({c: values for c in ENTITY_COLUMNS[2:]})


def _null(value: object) -> bool:
    """SQLite stores None and NaN as NULL."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fill(columns: Sequence[str], value: object, fallback: dict[str, object]) -> dict[str, object]:
    """``value`` in every column that can hold it (NOT NULL ones keep ``fallback`` for None/NaN)."""
    null = _null(value)
    return {c: fallback[c] if null and c in NOT_NULL else value for c in columns}


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, object]) -> int:
    names = ", ".join(row)
    cursor = conn.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    return int(cursor.lastrowid or 0)


def _write(writer: MemoryWriter, extras: list[dict[str, object]], updates: list[tuple[int, str, object]]) -> None:
    """The sweep (every column in every storage class, entities and relations and embeddings), the
    random ``extras``, then ``updates`` (index into the entities, column, value) and a few deletes."""
    conn = writer.conn
    base: dict[str, object] = {"name": "?", "entity_type": "t", "observations": "[]", "created_at": 1, "updated_at": 1,
                               "relation_type": "r"}  # fmt: skip
    entity_ids: list[int] = []
    for i, value in enumerate([*SWEEP, *extras]):
        row = _fill(ENTITY_COLUMNS[2:], value, base) if not isinstance(value, dict) else dict(value)
        row = {c: base[c] if c in NOT_NULL and _null(row[c]) else row[c] for c in ENTITY_COLUMNS[2:]}
        row["name"] = f"e{i}" if i % 3 else f"e{i}".encode()  # unique; TEXT and BLOB names
        entity_ids.append(_insert(conn, "entities", row))
    for i, value in enumerate(SWEEP):
        row = _fill(RELATION_COLUMNS[3:], value, base)
        row.update(from_entity_id=entity_ids[i], to_entity_id=entity_ids[-1 - i], relation_type=f"r{i}")
        _insert(conn, "relations", row)
    for i, value in enumerate([*SWEEP[:12], b"vector"]):
        null = _null(value)
        embedding = struct.pack("<384f", *hash_vector(str(i))) if value == b"vector" else b"" if null else value
        row = {"entity_id": entity_ids[i], "embedding": embedding, "created_at": 1 if null else value,
               "model_version": value if isinstance(value, str | bytes) and i % 2 else MODEL_NAME}  # fmt: skip
        _insert(conn, "embeddings", row)
    for index, column, value in updates:
        if not (column in NOT_NULL and _null(value)):
            conn.execute(f"UPDATE entities SET {column} = ? WHERE id = ?", (value, entity_ids[index % len(entity_ids)]))
    conn.execute("DELETE FROM entities WHERE id = ?", (entity_ids[-2],))  # cascades to its relations
    for explicit in (2**63 - 1, -(2**63), -5):  # the extreme ids (after AUTOINCREMENT's last use)
        row = {c: base[c] for c in ("entity_type", "observations", "created_at", "updated_at")}
        _insert(conn, "entities", {**row, "id": explicit, "name": f"id {explicit}", "version": explicit})


def _store_rows(db: Path) -> dict[int, dict[str, Any]]:
    conn = sqlite3.connect(db)
    cols = ", ".join(ENTITY_COLUMNS)
    rows = {int(r[0]): dict(zip(ENTITY_COLUMNS, r, strict=True)) for r in conn.execute(f"SELECT {cols} FROM entities")}
    conn.close()
    return rows


def _classes(db: Path) -> set[tuple[str, str]]:
    conn = sqlite3.connect(db)
    found = {
        (column, str(kind))
        for column in ENTITY_COLUMNS
        for (kind,) in conn.execute(f"SELECT DISTINCT typeof({column}) FROM entities")
    }
    conn.close()
    return found


def _check_destinations(stage: Stage, graph: Neo4jSettings) -> None:
    store = _store_rows(stage.db)
    with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        records = driver.execute_query(f"MATCH (n:`{stage.cfg.entity_label}`) RETURN properties(n) AS p").records
    in_graph = {int(r["p"]["id"]): r["p"] for r in records}
    client = QdrantClient(path=str(stage.cfg.qdrant_dir))
    try:
        points = {int(p.id): entity_values(p.payload or {}) for p in client.scroll(stage.cfg.collection, limit=10_000,
                                                                                  with_payload=True)[0]}  # fmt: skip
    finally:
        client.close()
    assert set(in_graph) == set(store) == set(points)
    for key, row in store.items():
        for column in ENTITY_COLUMNS[1:]:
            if column == "observations":
                continue  # compared as the events carry it by validate_store
            expected = row[column]
            assert values_equal(in_graph[key].get(column), expected), (key, column, expected, in_graph[key].get(column))
            assert values_equal(points[key].get(column), expected), (key, column, expected, points[key].get(column))


# Each example runs the whole pipeline (about a minute): no shrinking; a failure prints its example.
@settings(
    max_examples=3,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    extras=st.lists(row_values, max_size=12),
    updates=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(ENTITY_COLUMNS[3:]), values), max_size=12),
)
def test_every_stored_value_reaches_neo4j_and_qdrant_exactly(
    kafka: KafkaSettings, graph: Neo4jSettings, tmp_path_factory: Any, extras: list[dict[str, object]],
    updates: list[tuple[int, str, object]],
) -> None:  # fmt: skip
    stage = Stage(tmp_path_factory.mktemp("values"), kafka, graph)
    writer = MemoryWriter.create(stage.db)
    for explicit in (-7, 0):  # before capture: these reach the sinks through the snapshot only
        row: dict[str, object] = {
            "id": explicit, "name": f"snapshot {explicit}", "entity_type": b"\x00", "observations": "[1]",
            "created_at": float("inf"), "updated_at": "now", "confidence": None, "version": 2**63 - 1,
        }  # fmt: skip
        _insert(writer.conn, "entities", row)
    install(stage.db)
    try:
        stage.pipeline.start()
        stage.pipeline.wait_ready()
        _write(writer, extras, updates)
        stage.drain()
        stage.pipeline.stop()
        stored = _classes(stage.db)
        for column in ("version", "created_at", "valid_from", "valid_to"):
            assert {(column, k) for k in ("integer", "real", "text", "blob")} <= stored, column
        for column in ("confidence", "strength"):
            assert {(column, k) for k in ("null", "real", "text", "blob")} <= stored, column
        assert {("name", "blob"), ("observations", "blob"), ("metadata", "null"), ("metadata", "blob")} <= stored
        _check_destinations(stage, graph)
        problems = validate_store(stage.db, stage.opts, full=True, search=False)
        assert problems == [], problems
    finally:
        writer.close()
        stage.cleanup()


def test_text_that_is_not_utf8_is_parked_and_named_while_the_rest_flows(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    stage = Stage(tmp_path, kafka, graph)
    writer = MemoryWriter.create(stage.db)
    install(stage.db)
    try:
        stage.pipeline.start()
        stage.pipeline.wait_ready()
        first = writer.create_entity("first", "t", [])
        stage.drain()
        writer.conn.execute("UPDATE entities SET name = CAST(x'61ff62' AS TEXT) WHERE id = ?", (first,))
        after = writer.create_entity("after", "t", ["flows"])
        stage.drain()
        listed = subprocess.run(
            [sys.executable, "-m", "replicator", "source", "parked", "--db", str(stage.db)],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert listed.returncode == 1
        assert f"entities id {first} op u" in listed.stdout
        assert "name holds TEXT that is not valid UTF-8" in listed.stdout
        stage.pipeline.stop()
        with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
            names = {r["id"]: r["name"] for r in driver.execute_query(
                f"MATCH (n:`{stage.cfg.entity_label}`) RETURN n.id AS id, n.name AS name").records}  # fmt: skip
        assert names == {first: "first", after: "after"}, "the parked change is missing, nothing else"
    finally:
        writer.close()
        stage.cleanup()


def test_embedding_text_of_odd_values_is_the_lenient_reading() -> None:
    assert embedding_text(b"\xfe", 5, '["a", 3]') == "\\xfe 5 a 3"


def test_validation_names_a_value_that_lost_its_class_in_either_destination(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    """What round-trips compares equal; what a destination lost does not: 2.7 truncated to 2 in Neo4j,
    infinity turned into null in Qdrant (what a server's JSON does to an untagged inf)."""
    stage = Stage(tmp_path, kafka, graph)
    writer = MemoryWriter.create(stage.db)
    install(stage.db)
    try:
        stage.pipeline.start()
        stage.pipeline.wait_ready()
        odd = _insert(writer.conn, "entities", {"name": "odd", "entity_type": "t", "observations": "[]",
                                                "created_at": 1, "updated_at": 1, "version": 2.7,
                                                "confidence": float("inf")})  # fmt: skip
        stage.drain()
        stage.pipeline.stop()
        assert validate_store(stage.db, stage.opts, full=True, search=False) == []
        with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
            driver.execute_query(f"MATCH (n:`{stage.cfg.entity_label}` {{id: $id}}) SET n.version = 2", id=odd)
        client = QdrantClient(path=str(stage.cfg.qdrant_dir))
        try:
            client.set_payload(stage.cfg.collection, {"confidence": None}, points=[odd])
        finally:
            client.close()
        problems = validate_store(stage.db, stage.opts, full=True, search=False)
        assert f"neo4j entity {odd}: different (version)" in problems, problems
        assert f"qdrant entity {odd}: different (confidence)" in problems, problems
    finally:
        writer.close()
        stage.cleanup()
