"""Compacted change topics (issue 17, item 6): a sink whose offset lies before a compacted segment
never sees a ``d`` event, only the key's tombstone (null value). The topics here are the test's own,
created before the source with settings that make the broker compact within seconds, and the sinks
start again only once the broker has really removed the ``d`` events.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from replicator.capture.install import install
from replicator.demo.daemons import Pipeline
from replicator.events.avro import encode_key
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.workload import hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings
from replicator.validation.validate import validate_store
from tests.integration.test_shared_destinations import clear_graph, drain, pipeline_config

#: Compaction within seconds: tiny segments, any dirt is worth cleaning, tombstones kept a day.
FAST_COMPACTION = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.001",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "86400000",
}


def create_compacting_topics(kafka: KafkaSettings, prefix: str) -> None:
    admin = AdminClient(kafka.common())
    topics = [NewTopic(f"{prefix}.{t}", num_partitions=3, replication_factor=1, config=FAST_COMPACTION)
              for t in ("entities", "relations", "embeddings")]  # fmt: skip
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)


def values_of(kafka: KafkaSettings, topic: str, key: bytes) -> list[bytes | None]:
    """Every value the topic holds now for ``key`` (read_uncommitted: what the log really has)."""
    consumer = Consumer({**kafka.consumer(f"peek-{uuid.uuid4().hex}"), "isolation.level": "read_uncommitted"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        found: list[bytes | None] = []
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            while True:
                msg = consumer.poll(5)
                assert msg is not None, f"{topic}/{partition} stopped short of {high}"
                if msg.error() is None and msg.key() == key:
                    found.append(msg.value())
                if (msg.offset() or 0) >= high - 1:
                    break
        return found
    finally:
        consumer.close()


def wait_compacted(kafka: KafkaSettings, topic: str, key: bytes, timeout_s: float = 180) -> None:
    """Until the broker has removed every value of ``key`` but its tombstone."""
    deadline = time.monotonic() + timeout_s
    while True:
        values = values_of(kafka, topic, key)
        if values == [None]:
            return
        assert time.monotonic() < deadline, f"{topic} was not compacted: {len(values)} values of the key remain"
        time.sleep(2)


def test_a_delete_removed_by_compaction_still_reaches_both_destinations(
    tmp_path: Path, kafka: KafkaSettings, graph: Neo4jSettings
) -> None:
    cfg = pipeline_config(tmp_path, kafka, graph)
    create_compacting_topics(kafka, cfg.topic_prefix)
    writer = MemoryWriter.create(cfg.db)
    ids = [writer.create_entity(f"e{i}", "thing", [f"fact {i}"], embedding=hash_vector(f"e{i}")) for i in range(4)]
    hub_rel = writer.create_relation(ids[0], ids[1], "knows")
    lone_rel = writer.create_relation(ids[2], ids[3], "knows")
    install(cfg.db)
    pipeline = Pipeline(cfg)
    try:
        pipeline.start()
        pipeline.wait_ready()
        drain(pipeline)  # both sinks hold everything, positions before what follows
        pipeline.daemons["neo4j"].stop()
        pipeline.daemons["qdrant"].stop()

        writer.delete_entity(ids[0])  # d for the relation hub_rel, the embedding and the entity
        writer.delete_relation(lone_rel)  # a relation deleted on its own
        writer.close()
        wait_compacted(kafka, f"{cfg.topic_prefix}.entities", encode_key(ids[0]))
        wait_compacted(kafka, f"{cfg.topic_prefix}.relations", encode_key(hub_rel))
        wait_compacted(kafka, f"{cfg.topic_prefix}.relations", encode_key(lone_rel))

        pipeline.daemons["neo4j"].start()
        pipeline.daemons["qdrant"].start()
        drain(pipeline)
    finally:
        pipeline.stop()
    try:
        assert validate_store(cfg.db, cfg.target_options(), full=True, search=False) == []
    finally:
        clear_graph(graph, cfg)
