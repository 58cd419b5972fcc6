"""``replicator migrate --config replicator.yaml`` with the live strategy (issue 12, item 3) against the
real Kafka, Neo4j and Qdrant local mode, while a writer writes: capture installed, the source and
both sinks started as daemons with the same file, lag shown until they caught up, the cutover run with
the same file; then the destinations equal the store. Unique topic prefix, labels, groups, ports."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import neo4j

from replicator.cutover.config import read_backend, sample_config
from replicator.demo.daemons import free_ports
from replicator.demo.demo import LiveWriter, seed_store
from replicator.migration import history
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.workload import Workload, hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings


def _deployment(tmp: Path, kafka: KafkaSettings, graph: Neo4jSettings, tag: str) -> Path:
    (tmp / "data").mkdir()
    seed_store(tmp / "data" / "memory.db", 40, hash_vector).writer.close()
    (tmp / "caxton.yaml").write_text(sample_config("./data/memory.db"))
    source, sink_neo4j, sink_qdrant = free_ports(3)
    (tmp / "replicator.yaml").write_text(f"""\
strategy: live
store: {{path: ./data/memory.db, caxton_config: ./caxton.yaml}}
kafka: {{bootstrap: "{kafka.bootstrap_servers}", topic_prefix: "t{tag}.caxton.memory"}}
source: {{metrics_port: {source}}}
neo4j:
  uri: "{graph.uri}"
  password: ${{REPLICATOR_NEO4J_PASSWORD}}
  entity_label: Entity_{tag}
  position_label: Position_{tag}
  tombstone_label: Tombstone_{tag}
  group: g{tag}-neo4j
  metrics_port: {sink_neo4j}
qdrant:
  path: ./qdrant
  collection: c_{tag}
  group: g{tag}-qdrant
  metrics_port: {sink_qdrant}
cutover: {{max_pause: 10s}}
""")
    return tmp


def _clean(graph: Neo4jSettings, tag: str) -> None:
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        for label in (f"Entity_{tag}", f"Position_{tag}", f"Tombstone_{tag}"):
            driver.execute_query(f"MATCH (n:`{label}`) DETACH DELETE n", database_=graph.database)


def _replicator(where: Path, *args: str, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replicator", *args], cwd=where, capture_output=True, text=True,
                          timeout=timeout_s, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip


def test_live_migrate_with_a_writer_to_a_completed_cutover(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    tag = uuid.uuid4().hex[:8]
    where = _deployment(tmp_path, kafka, graph, tag)
    db = where / "data" / "memory.db"
    writer = LiveWriter(Workload(MemoryWriter(db, busy_timeout_ms=30_000), seed=5, vectorize=hash_vector), 20)
    writer.workload.counter = 10_000_000
    try:
        writer.start()
        done = _replicator(where, "migrate", "--config", "replicator.yaml", "--yes")
        writer.stop()
        assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
        assert "(live to hybrid): done" in done.stdout
        assert "head seq" in done.stderr  # the lag was shown while the sinks caught up
        assert read_backend(where / "caxton.yaml") == "hybrid"
        assert writer.acknowledged > 0 and writer.refused > 0, (writer.acknowledged, writer.refused)
        assert not writer.other_errors, writer.other_errors[:3]
        (migration,) = history.load_all(db).values()
        assert migration.state == "done"
        equal = _replicator(where, "validate", "--config", "replicator.yaml", "--target", "hybrid", "--full",
                            "--no-search")  # fmt: skip
        assert equal.returncode == 0, (equal.stdout, equal.stderr[-2000:])
    finally:
        writer.stop()
        _clean(graph, tag)
