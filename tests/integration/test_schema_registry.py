"""The Confluent wire format end to end: the source frames values with ids from a Schema Registry,
the Neo4j sink resolves them through it, and the graph equals the store.

No Schema Registry server can be installed here: the registry is the in-process fake of the unit
tests (the three REST endpoints the client uses, as Confluent's API answers them). Kafka, Neo4j,
the source and the sink are the real ones.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from neo4j import GraphDatabase

from replicator.capture.install import install
from replicator.capture.triggers import head_seq
from replicator.cutover.options import TargetOptions
from replicator.cutover.targets import Neo4jTarget
from replicator.demo.daemons import Pipeline, PipelineConfig, free_port
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.testing.workload import Workload, hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings
from replicator.validation.validate import validate_store
from tests.unit.test_avro import _FakeRegistry


@pytest.fixture
def registry() -> Iterator[str]:
    _FakeRegistry.subjects, _FakeRegistry.schemas, _FakeRegistry.calls = {}, [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_source_and_sink_speak_the_confluent_wire_format(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings, registry: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    db = tmp_path / "memory.db"
    workload = Workload(MemoryWriter.create(db), seed=9, vectorize=hash_vector)
    for _ in range(30):
        workload.step()
    install(db)
    cfg = PipelineConfig(
        db=db, workdir=tmp_path, bootstrap_servers=kafka.bootstrap_servers, topic_prefix=f"sr{tag}.caxton.memory",
        neo4j=graph, entity_label=f"Entity_{tag}", position_label=f"Position_{tag}", tombstone_label=f"Tomb_{tag}",
        neo4j_group=f"sr{tag}-neo4j", neo4j_sink=f"sr{tag}-neo4j", schema_registry=registry,
        source_metrics_port=free_port(), neo4j_metrics_port=free_port(), qdrant_metrics_port=free_port(),
    )  # fmt: skip
    opts = TargetOptions(
        bootstrap_servers=kafka.bootstrap_servers, topic_prefix=cfg.topic_prefix, neo4j=graph,
        neo4j_sink=cfg.neo4j_sink, neo4j_group=cfg.neo4j_group, entity_label=cfg.entity_label,
        position_label=cfg.position_label, qdrant=QdrantSettings(path=tmp_path / "unused"), qdrant_api_key=None,
        collection=cfg.collection, qdrant_sink=cfg.qdrant_sink, qdrant_group=cfg.qdrant_group,
    )  # fmt: skip
    pipeline = Pipeline(cfg)
    try:
        pipeline.start("source", "neo4j")
        pipeline.wait_ready()
        for _ in range(60):
            workload.step()
        conn = sqlite3.connect(db)
        head = head_seq(conn)
        conn.close()

        def drained() -> bool:
            target = Neo4jTarget(opts)
            try:
                position = target.position()
            finally:
                target.close()
            mark = position.watermark() if position else None
            return mark is not None and mark.seq >= head

        assert pipeline.wait_for(drained, 90), "the sink did not reach the head"
        assert validate_store(db, opts, targets=("neo4j",), full=True, search=False) == []

        consumer = Consumer({**kafka.consumer(f"sr{tag}-peek"), "auto.offset.reset": "earliest"})
        consumer.subscribe([f"{cfg.topic_prefix}.entities"])
        first = None
        for _ in range(50):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None and msg.value():
                first = msg.value()
                break
        consumer.close()
        assert first is not None and first[:1] == b"\x00", "values are Confluent-framed (magic byte 0)"
        assert any(s.startswith(f"{cfg.topic_prefix}.entities") for s in _FakeRegistry.subjects)
    finally:
        pipeline.stop()
        with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
            for label in (cfg.entity_label, cfg.position_label, cfg.tombstone_label):
                driver.execute_query(f"MATCH (n:`{label}`) DETACH DELETE n")
