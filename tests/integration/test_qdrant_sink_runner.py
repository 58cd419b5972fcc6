"""The Qdrant sink end to end: `python -m replicator sink qdrant --path DIR` over real Kafka (entities
and embeddings topics, heartbeats), killed with SIGKILL three times under load, restarted, stopped
with SIGTERM; then a fresh QdrantClient(path) must hold exactly the store's final entities."""

from __future__ import annotations

import json
import random
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient

from replicator.embedding import DIMENSIONS
from replicator.events.avro import EMBEDDING_CHANGE, ENTITY_CHANGE, HEARTBEAT, codec, encode_key
from replicator.events.envelope import heartbeat_record, source_record
from replicator.position import SinkPosition
from replicator.sinks.qdrant.points import EMBEDDING_SOURCE, STORE, TEXT_SHA256, text_sha256
from replicator.testing.events import STORE_ID, embedding_change, entity_change, entity_image, text_of
from replicator.testing.fake_source import Message, TransactionalPublisher
from replicator.transport.kafka import create_topic, delete_topic
from replicator.transport.settings import KafkaSettings
from tests.integration.sink_harness import http_get, metric, metrics_port, position_document, start_sink, wait_for

PARTITIONS = 3
COLLECTION = "caxton_embeddings"


@dataclass
class EmbeddingStore:
    """Entities with the store's own embeddings, as the source publishes them (design §2-§4)."""

    rng: random.Random
    seq: int = 0
    entities: dict[int, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[tuple[int, str], bytes] = field(default_factory=dict)  # (id, text) -> store vector
    never_renamed: set[int] = field(default_factory=set)  # created with a store vector, text kept

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _embedding(self, entity_id: int) -> Message:
        text = text_of(self.entities[entity_id])
        vector = np.random.default_rng(self.seq).normal(size=DIMENSIONS)
        blob = struct.pack(f"<{DIMENSIONS}f", *(vector / np.linalg.norm(vector)).tolist())
        self.blobs[(entity_id, text)] = blob
        record = embedding_change(self._next(), entity_id, blob, text)
        return ("embeddings", None, encode_key(entity_id), codec(EMBEDDING_CHANGE).encode(record))

    def _entity(self, op: str, image: dict[str, Any]) -> list[Message]:
        value = codec(ENTITY_CHANGE).encode(entity_change(op, self._next(), image))
        key = encode_key(image["id"])
        return [("entities", None, key, value)] + ([("entities", None, key, None)] if op == "d" else [])

    def step(self) -> list[Message]:
        """One store transaction: a create (with its store embedding 2 times in 3), a rename (the
        store re-embeds it), a confidence-only update, or a delete (cascading its embedding first)."""
        roll, ids = self.rng.random(), sorted(self.entities)
        if roll < 0.4 or len(ids) < 3:
            entity_id = self.seq + 1000
            self.entities[entity_id] = entity_image(entity_id, f"e{entity_id}", "thing", [f"obs {self.rng.random()}"])
            out = self._entity("c", self.entities[entity_id])
            if self.rng.random() < 0.67:
                self.never_renamed.add(entity_id)
                out.append(self._embedding(entity_id))
            return out
        entity_id = self.rng.choice(ids)
        if roll < 0.6:
            self.never_renamed.discard(entity_id)
            self.entities[entity_id] = {**self.entities[entity_id], "name": f"renamed {self.seq}"}
            return [*self._entity("u", self.entities[entity_id]), self._embedding(entity_id)]
        if roll < 0.8:
            self.entities[entity_id] = {**self.entities[entity_id], "confidence": self.rng.random()}
            return self._entity("u", self.entities[entity_id])
        self.never_renamed.discard(entity_id)
        before = self.entities.pop(entity_id)
        text = text_of(before)
        gone = embedding_change(self._next(), entity_id, self.blobs.get((entity_id, text), b""), text, op="d")
        key = encode_key(entity_id)
        cascade = [("embeddings", None, key, codec(EMBEDDING_CHANGE).encode(gone)), ("embeddings", None, key, None)]
        return cascade + self._entity("d", before)

    def heartbeats(self) -> list[Message]:
        out: list[Message] = []
        for table in ("entities", "embeddings"):
            source = source_record(STORE_ID, table, self.seq, int(time.time() * 1000))
            value = codec(HEARTBEAT).encode(heartbeat_record(source, source["ts_ms"]))
            out += [(table, p, encode_key(-1), value) for p in range(PARTITIONS)]
        return out


@pytest.fixture
def prefix(kafka: KafkaSettings) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:8]}.caxton.memory"
    create_topic(kafka, f"{name}.embeddings", PARTITIONS)
    yield name
    for suffix in ("entities", "relations", "embeddings", "dlq"):
        delete_topic(kafka, f"{name}.{suffix}")


def _watermark(port: int) -> int:
    raw = position_document(port)["position"]
    mark = None if raw is None else SinkPosition.from_json(json.dumps(raw)).watermark()
    return -1 if mark is None else mark.seq


def test_kill_9_three_times_then_sigterm_leaves_exactly_the_final_points(
    kafka: KafkaSettings, prefix: str, tmp_path: Path
) -> None:
    publisher = TransactionalPublisher(kafka, prefix, PARTITIONS)
    store, rng = EmbeddingStore(random.Random(13)), random.Random(17)
    txs = [store.step() + store.heartbeats() for _ in range(120)]

    def produce() -> None:
        for tx in txs:
            publisher.publish(tx)
            time.sleep(0.05)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    args = ("--path", str(tmp_path / "qdrant"), "--encode-batch", "16")
    group = "g" + uuid.uuid4().hex[:6]
    for _ in range(3):
        proc = start_sink("qdrant", kafka, prefix, group, *args)
        proc.wait_log("partitions assigned", timeout_s=60)
        time.sleep(rng.uniform(1.0, 4.0))  # embedding and writing when killed
        proc.kill()
    producer.join(60)
    final = start_sink("qdrant", kafka, prefix, group, *args)
    try:
        port = metrics_port(final)
        wait_for(lambda: _watermark(port) == store.seq, 120, f"the watermark at seq {store.seq}")
        text = http_get(port, "/metrics")[1].decode()
        assert metric(text, "replicator_sink_watermark_seq") == store.seq
        assert http_get(port, "/healthz") == (200, b"ok\n")
        assert position_document(port)["destination"] == {"entities": len(store.entities)}
    finally:
        code = final.terminate()
    assert code == 0, "".join(final.log)[-2000:]

    client = QdrantClient(path=str(tmp_path / "qdrant"))  # the lock is free once the sink exited
    try:
        points, _ = client.scroll(COLLECTION, limit=10_000, with_payload=True, with_vectors=True)
    finally:
        client.close()
    got = {int(p.id): p for p in points}
    assert sorted(got) == sorted(store.entities), "a deleted entity resurrected or one is missing"
    for entity_id, row in store.entities.items():
        payload = got[entity_id].payload or {}
        assert {k: payload[k] for k in ("name", "observations", "confidence")} == {
            k: row[k] for k in ("name", "observations", "confidence")
        }
        assert payload[TEXT_SHA256] == text_sha256(text_of(row))
        if entity_id in store.never_renamed or payload[EMBEDDING_SOURCE] == STORE:
            assert payload[EMBEDDING_SOURCE] == STORE
            stored = np.frombuffer(store.blobs[(entity_id, text_of(row))], dtype="<f4")
            assert np.max(np.abs(np.asarray(got[entity_id].vector, dtype="<f4") - stored)) < 1e-6
    assert store.never_renamed, "the workload exercised no store-vector reuse"
