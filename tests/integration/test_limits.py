"""Size limits (issue 17, item 3): what the store contract allows gets through, and a row that does not
fit is parked and named while everything after it flows, against the real Kafka, Neo4j and Qdrant
local mode, with the three daemons run as an operator runs them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]
from neo4j import GraphDatabase
from qdrant_client import QdrantClient

from replicator.capture.install import install
from replicator.capture.triggers import changelog_rows
from replicator.demo.daemons import Pipeline
from replicator.embedding import entity_text
from replicator.sinks.settings import Neo4jSettings
from replicator.source.kafka import ensure_topics
from replicator.store.schema import TABLES
from replicator.testing.workload import hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.kafka import create_topic, delete_topic
from replicator.transport.settings import MIB, KafkaSettings
from replicator.validation.validate import validate_store
from tests.integration.test_pipeline import Stage


def big_observations(total_bytes: int, item_bytes: int = 10_000) -> list[str]:
    """Distinct observations whose JSON array is at least ``total_bytes`` long."""
    items: list[str] = []
    size = 2
    while size < total_bytes:
        text = f"observation {len(items):06d} " + "x" * (item_bytes - 19)
        items.append(text)
        size += len(text) + 3
    return items


def test_a_10_mib_observation_list_reaches_both_destinations(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    """The store contract allows 10 MiB of observations; an update carries them (no before image since
    capture v5), the embedding event the 10 MiB text beside the vector."""
    stage = Stage(tmp_path, kafka, graph)
    writer = MemoryWriter.create(stage.db)
    install(stage.db)
    observations = big_observations(10 * MIB)
    try:
        stage.pipeline.start()
        stage.pipeline.wait_ready()
        big = writer.create_entity("big", "concept", observations[:-1])
        writer.set_observations(big, observations)  # an update: ~10 MiB of event
        # and the store's own vector of that text: an embedding event carrying the 10 MiB text
        writer.set_embedding(big, hash_vector(entity_text("big", "concept", observations)))
        small = writer.create_entity("after the big one", "concept", ["still flows"])
        stage.drain()
        stage.pipeline.stop()
        with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
            records = driver.execute_query(
                f"MATCH (n:`{stage.cfg.entity_label}`) RETURN n.id AS id, n.observations AS o"
            ).records
        in_graph = {r["id"]: r["o"] for r in records}
        assert in_graph[big] == observations
        assert in_graph[small] == ["still flows"]
        client = QdrantClient(path=str(stage.cfg.qdrant_dir))
        try:
            [point] = client.retrieve(stage.cfg.collection, [big], with_payload=True)
        finally:
            client.close()
        assert point.payload is not None and point.payload["observations"] == observations
        assert validate_store(stage.db, stage.opts, full=True, search=False) == []
        conn = sqlite3.connect(stage.db)
        assert changelog_rows(conn) == 0
        conn.close()
    finally:
        writer.close()
        stage.cleanup()


def _graph_observations(graph: Neo4jSettings, label: str) -> dict[int, list[str]]:
    with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        records = driver.execute_query(f"MATCH (n:`{label}`) RETURN n.id AS id, n.observations AS o").records
    return {r["id"]: r["o"] for r in records}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicator", *args], capture_output=True, text=True, check=False, timeout=120
    )


def test_a_row_over_the_limit_is_parked_and_named_while_the_rest_flows_and_a_retry_delivers_it(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    """With max_message_bytes 1 MiB a row of 1.1 MB observations does not fit (an insert of x, an update
    of y). It is parked; a later change of the same row that fits, and every other row, still arrive.
    Raised to the default, `source retry-parked` delivers the row's current state. (The source reads a
    row's state while publishing: each write is drained before the next, so no two coalesce.)"""
    stage = Stage(tmp_path, kafka, graph)
    stage.cfg = replace(stage.cfg, max_message_bytes=MIB)
    stage.pipeline = Pipeline(stage.cfg)
    writer = MemoryWriter.create(stage.db)
    install(stage.db)
    try:
        stage.pipeline.start()
        stage.pipeline.wait_ready()
        writer.create_entity("first", "concept", [])
        stage.drain()  # the snapshot is done: what follows is streamed, change by change
        x = writer.create_entity("x", "concept", big_observations(1_100_000))  # parked: ~1.1 MB of event
        y = writer.create_entity("y", "concept", big_observations(600_000))
        stage.drain()
        writer.set_observations(x, ["small again"])  # a later change of x that fits: it flows
        writer.set_observations(y, big_observations(1_100_000))  # parked, and y stays so
        z = writer.create_entity("z, after both", "concept", ["flows"])
        stage.drain()
        graph_now = _graph_observations(graph, stage.cfg.entity_label)
        assert graph_now[x] == ["small again"], "the later change of the parked row arrived"
        assert graph_now[y] == big_observations(600_000), "y holds its last state that fitted"
        assert graph_now[z] == ["flows"]
        listed = _cli("source", "parked", "--db", str(stage.db))
        assert listed.returncode == 1, listed.stdout + listed.stderr
        for row_id, op in ((x, "c"), (y, "u")):
            assert f"entities id {row_id} op {op}" in listed.stdout, listed.stdout
        assert "over the limit of 983040 bytes" in listed.stdout, listed.stdout
        log = stage.pipeline.daemons["source"].log.read_text()
        assert log.count("event=row_parked table=entities") == 2, log[-2000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{stage.cfg.source_metrics_port}/metrics") as response:
            metrics = response.read().decode()
        assert "replicator_source_parked_rows 2.0" in metrics
        stage.pipeline.stop()

        # The operator raises the limit (the default, 32 MiB) and retries.
        stage.cfg = replace(stage.cfg, max_message_bytes=None)
        stage.pipeline = Pipeline(stage.cfg)
        stage.pipeline.start()
        stage.pipeline.wait_ready()
        retried = _cli("source", "retry-parked", "--db", str(stage.db))
        assert retried.returncode == 0, retried.stdout + retried.stderr
        assert "2 parked row(s) queued" in retried.stdout
        stage.drain()
        stage.pipeline.stop()
        graph_now = _graph_observations(graph, stage.cfg.entity_label)
        assert graph_now[x] == ["small again"], "a retry never brings back an older state"
        assert graph_now[y] == big_observations(1_100_000)
        assert _cli("source", "parked", "--db", str(stage.db)).returncode == 0
        assert validate_store(stage.db, stage.opts, full=True, search=False) == []
    finally:
        writer.close()
        stage.cleanup()


def test_topics_made_before_get_their_size_limit_raised_never_lowered(kafka: KafkaSettings) -> None:
    """Topics of an older version (or made by hand) have the broker's 1 MB default: the source raises
    them to max_message_bytes; one already larger is left as it is."""
    prefix = f"t{uuid.uuid4().hex[:8]}.caxton.memory"
    admin = AdminClient(kafka.common())
    old = [NewTopic(f"{prefix}.{t}", num_partitions=3, replication_factor=1) for t in ("entities", "relations")]
    old.append(NewTopic(f"{prefix}.embeddings", num_partitions=3, replication_factor=1,
                        config={"max.message.bytes": str(40 * MIB)}))  # fmt: skip
    for future in admin.create_topics(old).values():
        future.result(timeout=30)
    try:
        ensure_topics(kafka, prefix, 3)
        resources = [ConfigResource(ConfigResource.Type.TOPIC, f"{prefix}.{t}") for t in TABLES]
        limits = {
            r.name.rsplit(".", 1)[1]: int(f.result(timeout=30)["max.message.bytes"].value)
            for r, f in admin.describe_configs(resources).items()
        }
        assert limits == {"entities": kafka.max_message_bytes, "relations": kafka.max_message_bytes,
                          "embeddings": 40 * MIB}  # fmt: skip
    finally:
        topics = [f"{prefix}.{t}" for t in TABLES] + [f"{prefix}.source-positions"]
        for future in admin.delete_topics(topics).values():
            future.result(timeout=30)


def test_two_sinks_creating_the_dead_letter_topic_at_once_both_start(kafka: KafkaSettings) -> None:
    """The second finds it already made and checks its size limit, while the broker may not yet describe
    the topic the first just created (UNKNOWN_TOPIC_OR_PART): that is waited out, not a failure."""
    names = [f"t{uuid.uuid4().hex[:8]}.caxton.memory.dlq" for _ in range(30)]
    errors: list[BaseException] = []

    def create(name: str) -> None:
        try:
            create_topic(kafka, name)
        except BaseException as exc:
            errors.append(exc)

    try:
        for name in names:
            threads = [threading.Thread(target=create, args=(name,)) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        assert errors == []
    finally:
        for name in names:
            delete_topic(kafka, name)
