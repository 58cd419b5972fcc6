"""Validation and diff against the real Neo4j and Qdrant (local mode) with the real model.

Destinations are populated directly as docs/design.md §6 says the sinks hold the data (no sink code
in this tree): unique labels per test on the shared Neo4j (cleaned up), a temp Qdrant directory.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import neo4j
import pytest
from click.testing import CliRunner
from qdrant_client import QdrantClient, models

from replicator.cli import cli
from replicator.embedding import DIMENSIONS, embed, entity_text, load_model
from replicator.guide.stats import neo4j_stats, qdrant_stats
from replicator.sinks.neo4j.model import GraphModel, relationship_type
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.testing.writer import MemoryWriter
from replicator.validation.repair import plan_repair
from replicator.validation.validate import ValidationOptions, validate, validate_store

ENTITIES = [
    ("Gradient boosting", "concept", ["a machine learning algorithm", "ensembles of decision trees"]),
    ("Neural networks", "concept", ["deep learning models trained with backpropagation"]),
    ("Query planner", "component", ["chooses indexes to optimize database queries"]),
    ("Index tuning", "practice", ["database optimization by adding the right indexes"]),
    ("Hexagonal architecture", "pattern", ["a software architecture pattern with ports and adapters"]),
    ("Microservices", "pattern", ["architecture style of small independently deployed services"]),
    ("Retry with backoff", "pattern", ["error handling strategy for transient failures"]),
    ("Circuit breaker", "pattern", ["stops calling a failing dependency", "error handling"]),
    ("Caching", "practice", ["performance optimization by keeping hot data in memory"]),
    ("Profiling", "practice", ["find where a program spends time to optimize performance"]),
    ("Ada Lovelace", "person", ["wrote the first program"]),
    ("Sourdough", "recipe", ["bread leavened with wild yeast"]),
]
RELATIONS = [(0, 1, "related to"), (2, 3, "works_with"), (4, 5, "alternative-to"), (6, 7, "complements"),
             (8, 9, "3rd party"), (10, 1, ""), (7, 6, "complements")]  # fmt: skip


@pytest.fixture(scope="module")
def model() -> Any:
    return load_model()


@dataclass
class World:
    db: Path
    graph: Neo4jSettings
    label: str
    qdrant: QdrantSettings
    driver: neo4j.Driver
    model: Any

    def cypher(self, query: str, **params: Any) -> list[neo4j.Record]:
        records, _, _ = self.driver.execute_query(query, params, database_=self.graph.database)
        return list(records)

    def qdrant_client(self) -> QdrantClient:
        return QdrantClient(path=str(self.qdrant.path))

    def run(self, targets: list[str], **options: Any) -> Any:
        return validate(
            self.db, targets, neo4j=self.graph, graph_model=GraphModel(entity_label=self.label), qdrant=self.qdrant,
            options=ValidationOptions(**options), model=self.model,
        )  # fmt: skip

    def flags(self) -> list[str]:
        return ["--db", str(self.db), "--entity-label", self.label, "--qdrant-path", str(self.qdrant.path),
                "--collection", self.qdrant.collection]  # fmt: skip


def _build_store(db: Path, model: Any) -> None:
    vectors = embed(model, [entity_text(n, t, o) for n, t, o in ENTITIES])
    writer = MemoryWriter.create(db)
    try:
        ids = [
            writer.create_entity(n, t, o, confidence=0.5 + i / 100, metadata={"i": i} if i % 2 else None, embedding=v)
            for i, ((n, t, o), v) in enumerate(zip(ENTITIES, vectors, strict=True))
        ]
        for a, b, rtype in RELATIONS:
            writer.create_relation(ids[a], ids[b], rtype, strength=0.25)
    finally:
        writer.close()


def _populate_neo4j(world: World) -> None:
    """Nodes, relationships, a stray placeholder and a tombstone, as design §6 lays them out."""
    conn = sqlite3.connect(world.db)
    conn.row_factory = sqlite3.Row
    lab = f"`{world.label}`"
    seq = 0
    for row in conn.execute("SELECT * FROM entities"):
        seq += 1
        props = {**dict(row), "observations": json.loads(row["observations"]), "_seq": seq}
        world.cypher(f"CREATE (n:{lab}) SET n = $props", props=props)
    world.cypher(f"CREATE (:{lab} {{id: 5000, _placeholder: true}})")
    world.cypher(f"CREATE (:`{world.label}_Tomb` {{kind: 'entity', id: 6000, _seq: 1}})")
    for row in conn.execute("SELECT * FROM relations"):
        seq += 1
        props = {k: row[k] for k in row.keys() if k not in ("from_entity_id", "to_entity_id")} | {"_seq": seq}  # noqa: SIM118 - a Row iterates values
        world.cypher(
            f"MATCH (a:{lab} {{id: $a}}), (b:{lab} {{id: $b}}) "
            f"CREATE (a)-[r:`{relationship_type(row['relation_type'])}`]->(b) SET r = $props",
            a=row["from_entity_id"], b=row["to_entity_id"], props=props,
        )  # fmt: skip
    conn.close()


def _populate_qdrant(world: World) -> None:
    conn = sqlite3.connect(world.db)
    conn.row_factory = sqlite3.Row
    client = world.qdrant_client()
    try:
        client.create_collection(
            world.qdrant.collection,
            vectors_config=models.VectorParams(size=DIMENSIONS, distance=models.Distance.COSINE),
        )
        points = []
        rows = conn.execute("SELECT e.*, m.embedding AS vec FROM entities e JOIN embeddings m ON m.entity_id = e.id")
        for seq, row in enumerate(rows, start=1):
            observations = json.loads(row["observations"])
            text = entity_text(row["name"], row["entity_type"], observations)
            payload = {k: row[k] for k in row.keys() if k != "vec"} | {  # noqa: SIM118
                "observations": observations, "_seq": seq, "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "embedding_model": "all-MiniLM-L6-v2", "embedding_model_version": "all-MiniLM-L6-v2@store",
                "embedding_source": "store",
            }  # fmt: skip
            vector = list(memoryview(row["vec"]).cast("f"))
            points.append(models.PointStruct(id=row["id"], vector=vector, payload=payload))
        client.upsert(world.qdrant.collection, points, wait=True)
    finally:
        client.close()
        conn.close()


@pytest.fixture
def world(tmp_path: Path, graph: Neo4jSettings, model: Any) -> Iterator[World]:
    label = f"Entity_{uuid.uuid4().hex[:10]}"
    qdrant = QdrantSettings(path=tmp_path / "qdrant", collection=f"c_{uuid.uuid4().hex[:8]}")
    (tmp_path / "qdrant").mkdir()
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        w = World(tmp_path / "memory.db", graph, label, qdrant, driver, model)
        _build_store(w.db, model)
        try:
            _populate_neo4j(w)
            _populate_qdrant(w)
            yield w
        finally:
            w.cypher(f"MATCH (n:`{label}`) DETACH DELETE n")
            w.cypher(f"MATCH (n:`{label}_Tomb`) DELETE n")


def _keys(report: Any) -> list[tuple[str, str, int, str, tuple[str, ...]]]:
    return [(m.target, m.kind, m.key, m.problem, m.fields) for m in report.mismatches]


def test_an_equal_copy_validates_in_full_and_by_sample(world: World) -> None:
    full = world.run(["hybrid"], full=True)

    assert full.ok, full.to_text()
    assert full.mismatches == [] and full.problems == []
    assert full.counts["neo4j"] == {"entities": 12, "placeholders": 1, "relations": 7}
    assert full.counts["qdrant"] == {"points": 12}
    assert full.search_consistency == 1.0
    assert full.search[0].query == "machine learning algorithms"
    assert full.search[0].store_top[0] == 1  # "Gradient boosting" answers the first query
    sample = world.run(["neo4j", "qdrant"], sample=4, seed=7, search=False)
    assert sample.ok and sample.sampled == 4 and sample.search_consistency is None


def test_a_corrupted_destination_is_caught_and_every_key_named(world: World) -> None:
    lab = f"`{world.label}`"
    world.cypher(f"MATCH (n:{lab} {{id: 3}}) SET n.confidence = 0.99, n.observations = ['edited']")  # changed
    world.cypher(f"MATCH (n:{lab} {{id: 12}}) DETACH DELETE n")  # missing node (had no relations)
    world.cypher(f"CREATE (:{lab} {{id: 999, name: 'Ghost', entity_type: 'x', observations: []}})")  # extra node
    world.cypher(f"MATCH (:{lab})-[r {{id: 4}}]->(:{lab}) DELETE r")  # missing relation
    world.cypher(f"MATCH (:{lab})-[r {{id: 2}}]->(:{lab}) SET r.strength = 1.0")  # changed relation
    client = world.qdrant_client()
    try:
        client.update_vectors(world.qdrant.collection, [models.PointVectors(id=5, vector=[1.0] + [0.0] * 383)])
        client.set_payload(world.qdrant.collection, {"name": "Renamed"}, points=[6])
        client.delete(world.qdrant.collection, points_selector=models.PointIdsList(points=[7]))
    finally:
        client.close()

    report = world.run(["hybrid"], sample=3, seed=1)

    assert not report.ok
    assert _keys(report) == [
        ("neo4j", "entity", 3, "different", ("observations", "confidence")),
        ("neo4j", "entity", 12, "missing", ()),
        ("neo4j", "entity", 999, "extra", ()),
        ("neo4j", "relation", 2, "different", ("strength",)),
        ("neo4j", "relation", 4, "missing", ()),
        ("qdrant", "entity", 7, "missing", ()),
    ] + [m for m in _keys(report) if m[0] == "qdrant" and m[2] in (5, 6)]
    assert "neo4j: 12 entities, the store has 12 entities" not in report.problems
    assert "neo4j: 6 relations, the store has 7 relations" in report.problems
    assert "qdrant: 11 points, the store has 12 entities" in report.problems
    # The sample of 3 may miss 5 and 6; --full compares every field of every key.
    full = world.run(["qdrant"], full=True, search=False)
    assert ("qdrant", "embedding", 5, "different", ("vector",)) in _keys(full)
    assert ("qdrant", "entity", 6, "different", ("name",)) in _keys(full)
    assert ("qdrant", "entity", 7, "missing", ()) in _keys(full)
    assert len(full.mismatches) == 3
    plan = plan_repair(report.mismatches, store_embedding_ids=range(1, 13))
    assert plan.resync == {"entities": [3, 7, 12], "relations": [2, 4]}
    assert sorted(plan.resync_deleted["entities"]) == [999]


def test_wrong_vectors_break_search_consistency(world: World) -> None:
    client = world.qdrant_client()
    try:
        points, _ = client.scroll(world.qdrant.collection, limit=100, with_vectors=True)
        vectors = [p.vector for p in points]
        shuffled = vectors[3:] + vectors[:3]  # every point gets another entity's vector
        client.update_vectors(
            world.qdrant.collection,
            [models.PointVectors(id=p.id, vector=v) for p, v in zip(points, shuffled, strict=True)],  # type: ignore[arg-type]
        )
    finally:
        client.close()

    # top-3 of 12: with top-10 of 12 entities any two orderings overlap by >= 0.8.
    report = world.run(["qdrant"], full=True, top_k=3)

    assert not report.ok
    assert report.search_consistency is not None and report.search_consistency < 0.95
    assert any(p.startswith("search consistency") for p in report.problems)
    assert {m.key for m in report.mismatches if m.kind == "embedding"} == set(range(1, 13))


def test_fast_mode_checks_counts_and_a_small_sample_only(world: World) -> None:
    world.cypher(f"MATCH (n:`{world.label}` {{id: 999}}) DELETE n")  # nothing to delete: still equal
    assert world.run(["neo4j"], fast=True, sample=5).ok
    world.cypher(f"CREATE (:`{world.label}` {{id: 999, name: 'Ghost', entity_type: 'x', observations: []}})")
    fast = world.run(["neo4j"], fast=True, sample=5, seed=3)
    assert not fast.ok
    assert fast.problems[0] == "neo4j: 13 entities, the store has 12 entities"
    assert fast.mode == "fast" and fast.sampled == 5


def test_cli_diff_and_validate_exit_1_and_name_keys(world: World) -> None:
    runner = CliRunner()
    clean = runner.invoke(cli, ["diff", "--target", "neo4j", *world.flags(), "--json"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output)["differences"] == []
    world.cypher(f"MATCH (n:`{world.label}` {{id: 2}}) SET n.name = 'Other'")
    client = world.qdrant_client()
    client.delete(world.qdrant.collection, points_selector=models.PointIdsList(points=[9]))
    client.close()

    diff = runner.invoke(cli, ["diff", "--target", "neo4j", *world.flags(), "--json"])
    assert diff.exit_code == 1
    assert json.loads(diff.output)["differences"] == [
        {"target": "neo4j", "kind": "entity", "key": 2, "problem": "different", "fields": ["name"]}
    ]
    qdiff = runner.invoke(cli, ["diff", "--target", "qdrant", *world.flags()])
    assert qdiff.exit_code == 1 and "qdrant entity 9: missing" in qdiff.output
    result = runner.invoke(cli, ["validate", "--target", "neo4j", *world.flags(), "--sample", "0", "--json"])
    assert result.exit_code == 0, result.output  # counts and keys agree; a sample of 0 compares no fields
    assert json.loads(result.output)["mismatches"] == []
    result = runner.invoke(cli, ["validate", "--target", "neo4j", *world.flags(), "--full"])
    assert result.exit_code == 1 and "mismatch: neo4j entity 2: different (name)" in result.output


def test_stats_per_backend(world: World) -> None:
    graph = neo4j_stats(world.graph, GraphModel(entity_label=world.label, tombstone_label=f"{world.label}_Tomb"))
    assert (graph["entities"], graph["placeholders"], graph["relations"], graph["tombstones"]) == (12, 1, 7, 1)
    assert qdrant_stats(world.qdrant)["points"] == 12
    out = CliRunner().invoke(cli, ["stats", *world.flags(), "--neo4j", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["store"]["entities"] == 12 and data["neo4j"]["relations"] == 7 and data["qdrant"]["points"] == 12


def test_cutover_entry_point_returns_one_line_per_problem(world: World) -> None:
    @dataclass
    class Opts:  # what cutover's TargetOptions carries
        neo4j: Neo4jSettings
        graph_model: GraphModel
        qdrant: QdrantSettings
        qdrant_api_key: str | None = None

    opts = Opts(world.graph, GraphModel(entity_label=world.label), world.qdrant)
    assert validate_store(world.db, opts, targets=("neo4j",), full=True) == []
    world.cypher(f"MATCH (n:`{world.label}` {{id: 4}}) DETACH DELETE n")
    problems = validate_store(world.db, opts, targets=("neo4j",), fast=True)
    assert problems[0] == "neo4j: 11 entities, the store has 12 entities"


def test_validate_prints_no_server_notification(tmp_path: Path, graph: Neo4jSettings) -> None:
    """Reading a label and properties the graph does not have yet makes Neo4j send notifications
    (01N50 label / 01N52 property key does not exist); the driver printed each one on stderr."""
    db = tmp_path / "memory.db"
    writer = MemoryWriter.create(db)
    writer.create_entity("quiet", "concept", ["nothing to say"])
    writer.close()
    label = f"Quiet_{uuid.uuid4().hex[:8]}"  # no node has it: every property key is unknown to Neo4j
    proc = subprocess.run(
        [sys.executable, "-m", "replicator", "validate", "--target", "neo4j", "--db", str(db), "--entity-label",
         label, "--no-search", "--neo4j-uri", graph.uri],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, (proc.stdout, proc.stderr)  # invalid: Neo4j holds nothing under that label
    assert "neo4j: 0 entities, the store has 1 entities" in proc.stdout
    assert "notification" not in proc.stderr.lower() and "GqlStatusObject" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
