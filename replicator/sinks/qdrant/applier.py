"""The thin, I/O half of the Qdrant sink: reads the state a plan needs and writes a plan, the
tombstones and the sink position with as few client calls as possible. Every client error is raised
as the sink error of its kind (``faults.qdrant_errors``): DestinationUnavailable (retry later),
DestinationRefused (API key, missing collection: fatal for the sink) or PoisonEvent (the batch holds
something Qdrant refuses).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from qdrant_client import QdrantClient, models

from replicator.embedding import DIMENSIONS
from replicator.errors import ConfigError
from replicator.position import SinkPosition
from replicator.sinks.qdrant.faults import qdrant_errors
from replicator.sinks.qdrant.planner import Plan
from replicator.sinks.qdrant.points import (
    SEQ,
    Payload,
    position_point_id,
    positions_collection,
    tombstone_point_id,
    vector_from_blob,
)

_TOMBSTONE = "tombstone"


def tune_local_storage(client: QdrantClient, collections: Iterable[str]) -> bool:
    """Local mode only: put each collection's SQLite file in WAL mode with synchronous=NORMAL.

    qdrant-client's local mode commits one SQLite transaction per point in rollback-journal mode,
    an fsync each: about 1 ms a point, which capped the sink near 300 events/s on this machine. WAL +
    NORMAL keeps every commit atomic and crash-safe for the process (a power cut may lose the last
    commits, which the sink re-applies from Kafka: its position is written after the points). A
    server URL is untouched. Reaches into the local client's internals, so anything unexpected just
    leaves the defaults. Returns whether it tuned anything."""
    local = getattr(client, "_client", None)
    tuned = False
    for name in collections:
        storage = getattr(getattr(getattr(local, "collections", {}).get(name), "storage", None), "storage", None)
        if isinstance(storage, sqlite3.Connection):
            storage.execute("PRAGMA journal_mode=WAL")
            storage.execute("PRAGMA synchronous=NORMAL")
            tuned = True
    return tuned


class Applier:
    """Reads and writes the sink's collection and ``<collection>_positions`` through one client."""

    def __init__(self, client: QdrantClient, collection: str, where: str) -> None:
        self.client = client
        self.collection = collection
        self.positions = positions_collection(collection)
        self.where = where

    def ensure_collections(self) -> None:
        """Create both collections if absent (idempotent). Raises ConfigError if the collection exists
        with another vector size or distance, DestinationUnavailable if Qdrant does not answer."""
        with qdrant_errors("creating collections", self.where):
            for name, size in ((self.collection, DIMENSIONS), (self.positions, 1)):
                if not self.client.collection_exists(name):
                    self.client.create_collection(
                        name, vectors_config=models.VectorParams(size=size, distance=models.Distance.COSINE)
                    )
            params = self.client.get_collection(self.collection).config.params.vectors
        if not isinstance(params, models.VectorParams) or (params.size, params.distance) != (
            DIMENSIONS,
            models.Distance.COSINE,
        ):
            raise ConfigError(
                f"Qdrant collection {self.collection!r} at {self.where} is not {DIMENSIONS}-d cosine ({params})",
                hint="point the sink at another --collection, or drop that collection",
            )
        tune_local_storage(self.client, (self.collection, self.positions))

    def fetch(self, ids: Iterable[int]) -> tuple[dict[int, Payload], dict[int, int]]:
        """Payloads of the existing points among ``ids`` and their tombstones (id -> delete seq)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}, {}
        with qdrant_errors("reading points", self.where):
            found = self.client.retrieve(self.collection, wanted, with_payload=True, with_vectors=False)
            marks = self.client.retrieve(
                self.positions, [tombstone_point_id(i) for i in wanted], with_payload=True, with_vectors=False
            )
        points = {int(p.id): dict(p.payload or {}) for p in found}
        tombstones = {int(m.payload[_TOMBSTONE]): int(m.payload[SEQ]) for m in marks if m.payload}
        return points, tombstones

    def write(self, plan: Plan, vectors: Mapping[str, list[float]], position: SinkPosition) -> None:
        """Apply ``plan`` (computed vectors looked up by text in ``vectors``), then its tombstones and
        ``position`` in one upsert right after (design §5: a crash in between replays the batch, which
        the per-point seqs make harmless). Idempotent."""
        operations: list[Any] = []
        if plan.writes:
            points = [
                models.PointStruct(
                    id=w.id,
                    vector=vector_from_blob(w.store_vector) if w.store_vector is not None else vectors[str(w.text)],
                    payload=w.payload,
                )
                for w in plan.writes
            ]
            operations.append(models.UpsertOperation(upsert=models.PointsList(points=points)))
        operations.extend(
            models.SetPayloadOperation(set_payload=models.SetPayload(payload=payload, points=[entity_id]))
            for entity_id, payload in plan.payload_updates.items()
        )
        if plan.deletes:
            operations.append(models.DeleteOperation(delete=models.PointIdsList(points=list(plan.deletes))))
        if operations:
            with qdrant_errors(f"writing {len(operations)} operations to {self.collection}", self.where):
                self.client.batch_update_points(self.collection, operations)
        marks = [
            models.PointStruct(id=tombstone_point_id(i), vector=[1.0], payload={_TOMBSTONE: i, SEQ: seq})
            for i, seq in plan.tombstones.items()
        ]
        marks.append(
            models.PointStruct(
                id=position_point_id(position.sink),
                vector=[1.0],
                payload={"sink": position.sink, "position": position.to_json()},
            )
        )
        with qdrant_errors(f"writing the position of sink {position.sink!r}", self.where):
            self.client.upsert(self.positions, marks)


def read_position(client: QdrantClient, collection: str, sink: str) -> SinkPosition | None:
    """The position sink ``sink`` stored beside ``collection``; None if it never wrote one (or the
    positions collection does not exist). Raises DestinationUnavailable."""
    with qdrant_errors(f"reading the position of sink {sink!r}", collection):
        if not client.collection_exists(positions_collection(collection)):
            return None
        found = client.retrieve(positions_collection(collection), [position_point_id(sink)], with_payload=True)
    if not found or not found[0].payload:
        return None
    text = found[0].payload["position"]
    return SinkPosition.from_json(text if isinstance(text, str) else json.dumps(text))
