"""The whole pipeline, store -> source -> Kafka -> Neo4j and Qdrant sinks, as an operator runs it
(three daemons on the local stack), judged by comparing the destinations with the store field by
field. Random workloads come from hypothesis; a corrupted destination is caught and repaired.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neo4j import GraphDatabase

from replicator.capture.install import install
from replicator.capture.triggers import head_seq
from replicator.cutover.targets import Neo4jTarget, QdrantTarget
from replicator.demo.daemons import Pipeline, PipelineConfig, free_port
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.workload import Workload, hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings
from replicator.validation.validate import validate_store


class Stage:
    """A store and the three daemons replicating it, all names unique to this run."""

    def __init__(self, workdir: Path, kafka: KafkaSettings, graph: Neo4jSettings) -> None:
        tag = uuid.uuid4().hex[:8]
        self.graph = graph
        self.db = workdir / "memory.db"
        self.cfg = PipelineConfig(
            db=self.db, workdir=workdir, bootstrap_servers=kafka.bootstrap_servers,
            topic_prefix=f"p{tag}.caxton.memory", neo4j=graph, entity_label=f"Entity_{tag}",
            position_label=f"Position_{tag}", tombstone_label=f"Tombstone_{tag}", neo4j_group=f"p{tag}-neo4j",
            neo4j_sink=f"p{tag}-neo4j", qdrant_group=f"p{tag}-qdrant", qdrant_sink=f"p{tag}-qdrant",
            source_metrics_port=free_port(), neo4j_metrics_port=free_port(), qdrant_metrics_port=free_port(),
        )  # fmt: skip
        self.opts = self.cfg.target_options()
        self.pipeline = Pipeline(self.cfg)

    def drain(self, kinds: tuple[str, ...] = ("neo4j", "qdrant")) -> None:
        conn = sqlite3.connect(self.db)
        head = head_seq(conn)
        conn.close()

        def drained() -> bool:
            for target in [t for t in (Neo4jTarget(self.opts), QdrantTarget(self.opts)) if t.name.endswith(kinds)]:
                try:
                    position = target.position()
                finally:
                    target.close()
                mark = position.watermark() if position else None
                if mark is None or mark.seq < head:
                    return False
            return True

        assert self.pipeline.wait_for(drained, 120), f"sinks did not reach seq {head}"

    def cleanup(self) -> None:
        self.pipeline.stop()
        with GraphDatabase.driver(self.graph.uri, auth=self.graph.auth()) as driver:
            for label in (self.cfg.entity_label, self.cfg.position_label, self.cfg.tombstone_label):
                driver.execute_query(f"MATCH (n:`{label}`) DETACH DELETE n")


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), before=st.integers(0, 60), during=st.integers(50, 400))
def test_random_workloads_arrive_field_by_field(
    kafka: KafkaSettings, graph: Neo4jSettings, seed: int, before: int, during: int
) -> None:
    """``before`` steps happen before capture is installed (they reach the sinks by the snapshot),
    ``during`` steps while the daemons run; the destinations must then equal the store."""
    with tempfile.TemporaryDirectory() as tmp:
        stage = Stage(Path(tmp), kafka, graph)
        workload = Workload(MemoryWriter.create(stage.db), seed=seed, vectorize=hash_vector)
        for _ in range(before):
            workload.step()
        install(stage.db)
        try:
            stage.pipeline.start()
            stage.pipeline.wait_ready()
            for _ in range(during):
                workload.step()
            stage.drain()
        finally:
            stage.pipeline.stop()
        try:
            # Sinks stopped: Qdrant's local storage is free to open for the comparison.
            assert validate_store(stage.db, stage.opts, full=True, search=False) == []
        finally:
            stage.cleanup()


def test_validation_names_a_corrupted_graph_and_repair_fixes_it(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    stage = Stage(tmp_path, kafka, graph)
    workload = Workload(MemoryWriter.create(stage.db), seed=42, vectorize=hash_vector)
    for _ in range(40):
        workload.step()
    install(stage.db)
    try:
        stage.pipeline.start("source", "neo4j")
        stage.pipeline.wait_ready()
        for _ in range(40):
            workload.step()
        stage.drain(("neo4j",))
        label = stage.cfg.entity_label
        with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
            victims = [
                r["id"]
                for r in driver.execute_query(f"MATCH (n:`{label}`) RETURN n.id AS id ORDER BY id LIMIT 2").records
            ]
            driver.execute_query(f"MATCH (n:`{label}` {{id: $id}}) SET n.name = 'corrupted'", id=victims[0])
            driver.execute_query(f"MATCH (n:`{label}` {{id: $id}}) DETACH DELETE n", id=victims[1])

        def validate(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "replicator", "validate", "--target", "neo4j", "--db", str(stage.db), "--full",
                 "--no-search", "--json", "--entity-label", label, *extra],
                capture_output=True, text=True, check=False, timeout=120,
            )  # fmt: skip

        broken = validate("--repair")
        assert broken.returncode == 1, broken.stderr
        report = json.loads(broken.stdout)
        named = {(m["kind"], m["key"]) for m in report["mismatches"]}
        assert ("entity", victims[0]) in named and ("entity", victims[1]) in named, report["mismatches"]

        stage.drain(("neo4j",))  # the repair's changelog rows went through source and sink
        fixed = validate()
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    finally:
        stage.cleanup()
