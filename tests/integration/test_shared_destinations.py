"""Destinations shared by several pipelines, and migrations run again (issue 17, item 2).

Real daemons (source, Neo4j sink, Qdrant sink) on the local stack, judged by ``validate_store``
field by field: two stores with the same ids into one Neo4j database and one Qdrant local storage,
and a store whose capture is uninstalled and installed again while its sinks keep running.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import replace
from pathlib import Path

from neo4j import GraphDatabase

from replicator.capture.install import install, uninstall
from replicator.capture.triggers import head_seq
from replicator.cutover.targets import Neo4jTarget, QdrantTarget
from replicator.demo.daemons import Pipeline, PipelineConfig, free_ports
from replicator.errors import ReplicatorError
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.workload import hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings
from replicator.validation.validate import validate_store


def pipeline_config(workdir: Path, kafka: KafkaSettings, graph: Neo4jSettings, **shared: object) -> PipelineConfig:
    """A pipeline with names of its own (prefix, entity label, groups, sinks), except ``shared``."""
    tag = uuid.uuid4().hex[:8]
    ports = free_ports(3)
    cfg = PipelineConfig(
        db=workdir / "memory.db", workdir=workdir, bootstrap_servers=kafka.bootstrap_servers,
        topic_prefix=f"s{tag}.caxton.memory", neo4j=graph, entity_label=f"Entity_{tag}",
        position_label=f"Position_{tag}", tombstone_label=f"Tombstone_{tag}", neo4j_group=f"s{tag}-neo4j",
        neo4j_sink=f"s{tag}-neo4j", qdrant_group=f"s{tag}-qdrant", qdrant_sink=f"s{tag}-qdrant",
        collection=f"c{tag}", source_metrics_port=ports[0], neo4j_metrics_port=ports[1],
        qdrant_metrics_port=ports[2],
    )  # fmt: skip
    return replace(cfg, **shared)  # type: ignore[arg-type]


def drain(pipeline: Pipeline, kinds: tuple[str, ...] = ("neo4j", "qdrant")) -> None:
    """Wait until every sink of ``kinds`` has a watermark at the store's changelog head."""
    cfg = pipeline.config
    conn = sqlite3.connect(cfg.db)
    head = head_seq(conn)
    conn.close()
    opts = cfg.target_options()

    def drained() -> bool:
        for target in [t for t in (Neo4jTarget(opts), QdrantTarget(opts)) if t.name.endswith(kinds)]:
            try:
                position = target.position()
            except ReplicatorError:  # a sink just (re)started: its endpoint is not up yet
                return False
            finally:
                target.close()
            mark = position.watermark() if position else None
            if mark is None or mark.seq < head:
                return False
        return True

    assert pipeline.wait_for(drained, 120), f"sinks did not reach seq {head}"


def clear_graph(graph: Neo4jSettings, *configs: PipelineConfig) -> None:
    """Remove the pipelines' nodes, constraints and indexes from the shared database."""
    drop_labels(graph, {label for c in configs for label in (c.entity_label, c.position_label, c.tombstone_label)})


def drop_labels(graph: Neo4jSettings, labels: set[str]) -> None:
    """Delete the nodes, constraints and indexes of ``labels`` (a test's own) from the shared database."""
    with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        for label in labels:
            driver.execute_query(f"MATCH (n:`{label}`) DETACH DELETE n")
        records, _, _ = driver.execute_query("SHOW CONSTRAINTS YIELD name, labelsOrTypes RETURN *")
        for r in records:
            if set(r["labelsOrTypes"] or []) & labels:
                driver.execute_query(f"DROP CONSTRAINT `{r['name']}` IF EXISTS")
        records, _, _ = driver.execute_query("SHOW INDEXES YIELD name, labelsOrTypes, owningConstraint RETURN *")
        for r in records:
            if r["owningConstraint"] is None and set(r["labelsOrTypes"] or []) & labels:
                driver.execute_query(f"DROP INDEX `{r['name']}` IF EXISTS")


def populate(writer: MemoryWriter, entities: int, relations: int) -> tuple[list[int], list[int]]:
    """``entities`` entities with store embeddings, ``relations`` relations between them."""
    ids = [
        writer.create_entity(f"e{i}", "thing", [f"fact {i}"], embedding=hash_vector(f"e{i} thing fact {i}"))
        for i in range(entities)
    ]
    pairs = [(ids[i % entities], ids[(i + 1 + i // entities) % entities]) for i in range(relations)]
    rels = [writer.create_relation(a, b, f"rel {i % 3}") for i, (a, b) in enumerate(pairs)]
    return ids, rels


def run_to_head(cfg: PipelineConfig) -> None:
    pipeline = Pipeline(cfg)
    try:
        pipeline.start()
        pipeline.wait_ready()
        drain(pipeline)
    finally:
        pipeline.stop()


def test_two_stores_with_the_same_ids_into_one_database_and_one_qdrant_storage(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    """Store A deletes ids at high seqs; store B creates the same ids at low seqs. Each pipeline has its
    own prefix, groups, entity label and collection, but they share the tombstone and position labels
    (as every pipeline did by default) and one Qdrant local storage: B must lose nothing to A."""
    tag = uuid.uuid4().hex[:8]
    shared = {"tombstone_label": f"Tombstone_{tag}", "position_label": f"Position_{tag}",
              "qdrant_path": tmp_path / "qdrant"}  # fmt: skip
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cfg_a = pipeline_config(tmp_path / "a", kafka, graph, **shared)
    cfg_b = pipeline_config(tmp_path / "b", kafka, graph, **shared)
    pipeline_a = Pipeline(cfg_a)
    try:
        writer = MemoryWriter.create(cfg_a.db)
        ids, _ = populate(writer, 30, 40)
        install(cfg_a.db)
        pipeline_a.start()
        pipeline_a.wait_ready()
        drain(pipeline_a)  # the snapshot is applied: what follows is streamed
        for round_ in range(6):  # push A's seqs far above anything B will reach
            for entity_id in ids:
                writer.set_confidence(entity_id, 0.5 + round_ / 100)
        for entity_id in ids[:12]:
            writer.delete_entity(entity_id)  # streamed deletes (cascading to relations): tombstones
        writer.close()
        drain(pipeline_a)
        pipeline_a.stop()

        writer = MemoryWriter.create(cfg_b.db)
        populate(writer, 30, 40)
        writer.close()
        install(cfg_b.db)
        run_to_head(cfg_b)

        for cfg in (cfg_a, cfg_b):
            assert validate_store(cfg.db, cfg.target_options(), full=True, search=False) == [], cfg.entity_label
    finally:
        pipeline_a.stop()
        clear_graph(graph, cfg_a, cfg_b)


def test_uninstall_then_install_keeps_the_destinations_equal_to_the_store(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    """docs/capture.md's path for a writer's DROP COLUMN: stop the source, uninstall, the writer writes
    (and alters its table), install, start the source; the sinks run throughout."""
    cfg = pipeline_config(tmp_path, kafka, graph)
    pipeline = Pipeline(cfg)
    writer = MemoryWriter.create(cfg.db)
    ids, rels = populate(writer, 20, 20)
    install(cfg.db)
    try:
        pipeline.start()
        pipeline.wait_ready()
        drain(pipeline)
        for entity_id in ids:
            writer.add_observations(entity_id, ["seen before the reinstall"])
        drain(pipeline)

        pipeline.daemons["source"].stop()
        old_head = head_seq(writer.conn)
        uninstall(cfg.db)
        # The capture gap: nothing of this reaches the changelog.
        writer.add_observations(ids[0], ["written while capture was out"])
        writer.delete_entity(ids[1])
        writer.delete_relation(rels[5])
        gap_entity = writer.create_entity("made in the gap", "thing", ["new"], embedding=hash_vector("gap"))
        writer.conn.execute("ALTER TABLE entities ADD COLUMN scratch TEXT")
        writer.conn.execute("ALTER TABLE entities DROP COLUMN scratch")
        install(cfg.db)
        pipeline.daemons["source"].start()

        for entity_id in [ids[0], *ids[2:], gap_entity]:
            writer.add_observations(entity_id, ["written after the reinstall"])
        writer.set_relation_strength(rels[0], 0.25)
        writer.delete_entity(ids[3])
        writer.close()
        drain(pipeline)
        target = Neo4jTarget(cfg.target_options())
        position = target.position()
        target.close()
        # The re-snapshot after the gap was stamped above everything before it, and swept (what the
        # gap deleted is gone from Qdrant too: validate_store below compares every point).
        assert position is not None and position.snapshot_seq > old_head
        assert position.swept_seq == position.snapshot_seq
    finally:
        pipeline.stop()
    try:
        assert validate_store(cfg.db, cfg.target_options(), full=True, search=False) == []
    finally:
        clear_graph(graph, cfg)
