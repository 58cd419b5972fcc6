"""One replicator.yaml for the daemons and the commands that inspect them (issue 12): the source and the
Neo4j sink started with ``--config`` alone, then ``lag`` and ``validate`` run with the same file find
that sink, its group and its labels, and agree with it. Before, each took its own flags, and one
mismatch gave a wrong answer (lag of a group that does not exist, validate against another label)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import neo4j

from replicator.demo.daemons import Daemon, free_ports
from replicator.demo.demo import seed_store
from replicator.sinks.neo4j.model import quote
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.workload import hash_vector
from replicator.transport.kafka import delete_topic
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import change_topics, dlq_topic, positions_topic
from tests.integration.sink_harness import wait_for


def _replicator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replicator", *args], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def _config(tmp_path: Path, tag: str, kafka: KafkaSettings, graph: Neo4jSettings) -> Path:
    source_port, sink_port = free_ports(2)
    path = tmp_path / "replicator.yaml"
    path.write_text(f"""\
store:
  path: memory.db
kafka:
  bootstrap: {kafka.bootstrap_servers}
  topic_prefix: cfg{tag}
source:
  metrics_port: {source_port}
neo4j:
  uri: {graph.uri}
  user: {graph.user}
  password: ${{REPLICATOR_NEO4J_PASSWORD}}
  database: {graph.database}
  entity_label: Cfg_{tag}
  tombstone_label: CfgTombstone_{tag}
  position_label: CfgPosition_{tag}
  group: cfg-sink-{tag}
  metrics_port: {sink_port}
""")
    return path


def _lag(config: Path) -> dict[str, Any]:
    proc = _replicator("lag", "--config", str(config), "--json", "--interval", "200ms")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_daemons_and_lag_and_validate_started_from_one_file_agree(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    tag = uuid.uuid4().hex[:8]
    seed_store(tmp_path / "memory.db", 20, hash_vector).writer.close()
    config = _config(tmp_path, tag, kafka, graph)
    installed = _replicator("source", "install", "--config", str(config))
    assert installed.returncode == 0, installed.stderr
    daemons = [Daemon("source", ["source", "run", "--config", str(config)], tmp_path / "source.log"),
               Daemon("neo4j", ["sink", "neo4j", "--config", str(config)], tmp_path / "sink.log")]  # fmt: skip
    try:
        for daemon in daemons:
            daemon.start()

        def caught_up() -> bool:
            for daemon in daemons:
                assert daemon.alive(), f"{daemon.name} exited:\n{daemon.tail()}"
            sinks = _lag(config)["sinks"]
            assert [(s["sink"], s["group"]) for s in sinks] == [(f"cfg-sink-{tag}", f"cfg-sink-{tag}")]
            return bool(sinks[0]["watermark_seq"] is not None and sinks[0]["lag_seq"] == 0)

        wait_for(caught_up, 120, "the sink, as lag reads it from the same file, to catch up")
        checked = _replicator("validate", "--config", str(config), "--no-search", "--json")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert json.loads(checked.stdout)["ok"] is True
    finally:
        for daemon in reversed(daemons):
            daemon.stop()
        with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
            for label in (f"Cfg_{tag}", f"CfgTombstone_{tag}", f"CfgPosition_{tag}"):
                driver.execute_query(f"MATCH (n:{quote(label)}) DETACH DELETE n", database_=graph.database)
        prefix = f"cfg{tag}"
        tables = ("entities", "relations", "embeddings")
        for topic in [*change_topics(prefix, tables), positions_topic(prefix), dlq_topic(prefix)]:
            delete_topic(kafka, topic)
