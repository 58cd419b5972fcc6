"""The thin, I/O half of the Qdrant sink: reads the state a plan needs and writes a plan, the
tombstones and the sink position with as few client calls as possible. Every client error is raised
as the sink error of its kind (``faults.qdrant_errors``): DestinationUnavailable (retry later),
DestinationRefused (API key, missing collection: fatal for the sink) or PoisonEvent (the batch holds
something Qdrant refuses).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import QdrantClient, models

from replicator.embedding import DIMENSIONS
from replicator.errors import ConfigError
from replicator.position import SinkPosition
from replicator.sinks.qdrant import layout as qlayout
from replicator.sinks.qdrant.faults import qdrant_errors
from replicator.sinks.qdrant.planner import Plan, PointWrite
from replicator.sinks.qdrant.points import (
    EMBEDDING_SEQ,
    EMBEDDING_SOURCE,
    PENDING,
    PLACEHOLDER,
    SEQ,
    Payload,
    owner_point_id,
    position_of,
    position_point_id,
    positions_collection,
    tombstone_point_id,
    vector_from_blob,
)

_TOMBSTONE = "tombstone"
_STORE = "store"
_OWNER = "owner"


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

    def __init__(self, client: QdrantClient, collection: str, where: str, layout: str = "caxton") -> None:
        self.client = client
        self.layout = layout
        self.collection = collection
        self.positions = positions_collection(collection)
        self.where = where

    def ensure_collections(self) -> None:
        """Create both collections if absent (idempotent). Raises ConfigError if the collection exists
        with another vector size or distance, DestinationUnavailable if Qdrant does not answer."""
        with qdrant_errors("creating collections", self.where):
            if not self.client.collection_exists(self.collection):
                self.client.create_collection(self.collection, vectors_config=qlayout.vectors_config(self.layout))
            if not self.client.collection_exists(self.positions):
                self.client.create_collection(
                    self.positions, vectors_config=models.VectorParams(size=1, distance=models.Distance.COSINE)
                )
            params = self.client.get_collection(self.collection).config.params.vectors
        held = qlayout.layout_of(params)
        if held is None:
            raise ConfigError(
                f"Qdrant collection {self.collection!r} at {self.where} is not {DIMENSIONS}-d cosine ({params})",
                hint="point the sink at another --collection, or drop that collection",
            )
        if held != self.layout:
            raise ConfigError(
                f"Qdrant collection {self.collection!r} at {self.where} holds the {held} layout; this sink "
                f"writes the {self.layout} layout",
                hint=f"run the sink with --layout {held}, or give the {self.layout} layout its own --collection "
                "(docs/layouts.md)",
            )
        tune_local_storage(self.client, (self.collection, self.positions))

    def fetch(self, ids: Iterable[int], store: str | None) -> State:
        """Payloads of the existing points among ``ids``, their tombstones of ``store`` (id -> delete
        seq) and the collection's owner, in one read of each collection."""
        wanted = sorted(set(ids))
        marks_wanted = [owner_point_id(), *([tombstone_point_id(store, i) for i in wanted] if store else [])]
        with qdrant_errors("reading points", self.where):
            found = self.client.retrieve(self.collection, wanted, with_payload=True, with_vectors=False)
            marks = self.client.retrieve(self.positions, marks_wanted, with_payload=True, with_vectors=False)
        state = State(points={int(p.id): qlayout.from_payload(self.layout, p.payload or {}) for p in found})
        for mark in marks:
            payload = mark.payload or {}
            if _OWNER in payload:
                state.owner = str(payload[_STORE])
            elif _TOMBSTONE in payload and payload.get(_STORE) == store:
                state.tombstones[int(payload[_TOMBSTONE])] = int(payload[SEQ])
        return state

    def write(self, plan: Plan, vectors: Mapping[str, list[float]]) -> None:
        """Apply ``plan``'s points (computed vectors looked up by text in ``vectors``). Idempotent; the
        tombstones and position follow with ``mark`` (design §5: a crash in between replays the batch,
        which the per-point seqs make harmless)."""
        operations: list[Any] = []
        if plan.writes:
            points = [
                models.PointStruct(
                    id=w.id,
                    vector=qlayout.point_vector(self.layout, _vector_of(w, vectors)),
                    payload=qlayout.to_payload(self.layout, w.payload, w.document),
                )
                for w in plan.writes
            ]
            operations.append(models.UpsertOperation(upsert=models.PointsList(points=points)))
        operations.extend(
            models.SetPayloadOperation(
                set_payload=models.SetPayload(payload=qlayout.to_payload(self.layout, fields, None), points=[entity_id])
            )
            for entity_id, fields in plan.payload_updates.items()
        )
        if plan.deletes:
            operations.append(models.DeleteOperation(delete=models.PointIdsList(points=list(plan.deletes))))
        if operations:
            with qdrant_errors(f"writing {len(operations)} operations to {self.collection}", self.where):
                self.client.batch_update_points(self.collection, operations)

    def pending(self, up_to: int, limit: int) -> list[tuple[int, Payload]]:
        """Up to ``limit`` pending points (planner: snapshot entities awaiting the store's vector) with
        ``_seq`` <= ``up_to``, as (id, payload as stored, in this collection's layout). Read-only."""
        wanted = models.Filter(
            must=[
                models.FieldCondition(key=EMBEDDING_SOURCE, match=models.MatchValue(value=PENDING)),
                models.FieldCondition(key=SEQ, range=models.Range(lte=up_to)),
            ]
        )
        with qdrant_errors("reading the pending points", self.where):
            found, _ = self.client.scroll(self.collection, scroll_filter=wanted, limit=limit, with_payload=True)
        return [(int(p.id), dict(p.payload or {})) for p in found]

    def put(self, points: list[models.PointStruct]) -> None:
        """Upsert whole points (in this collection's layout already). Idempotent."""
        with qdrant_errors(f"writing {len(points)} points to {self.collection}", self.where):
            self.client.upsert(self.collection, points)

    def mark(self, tombstones: Mapping[int, int], position: SinkPosition, store: str, *, claim: bool) -> None:
        """Upsert ``tombstones`` (id -> delete seq) of ``store``, the position and, with ``claim``, the
        owner record, in one request. Idempotent."""
        marks = [
            models.PointStruct(
                id=tombstone_point_id(store, i), vector=[1.0], payload={_TOMBSTONE: i, _STORE: store, SEQ: seq}
            )
            for i, seq in tombstones.items()
        ]
        if claim:
            owner = {_OWNER: self.collection, _STORE: store, "since_ms": int(time.time() * 1000)}
            marks.append(models.PointStruct(id=owner_point_id(), vector=[1.0], payload=owner))
        marks.append(
            models.PointStruct(
                id=position_point_id(position.sink),
                vector=[1.0],
                payload={"sink": position.sink, "position": position.to_json()},
            )
        )
        with qdrant_errors(f"writing the position of sink {position.sink!r}", self.where):
            self.client.upsert(self.positions, marks)

    def sweep(self, snapshot_seq: int) -> None:
        """Delete the points older than snapshot ``snapshot_seq`` (``_seq`` and ``_embedding_seq``
        below it): deleted while no changelog recorded it (``SinkPosition.sweep_due``). Idempotent."""
        stale = models.Filter(
            must=[models.FieldCondition(key=SEQ, range=models.Range(lt=snapshot_seq))],
            must_not=[models.FieldCondition(key=EMBEDDING_SEQ, range=models.Range(gte=snapshot_seq))],
        )
        with qdrant_errors(f"sweeping points older than seq {snapshot_seq}", self.where):
            self.client.delete(self.collection, models.FilterSelector(filter=stale))

    def collect_tombstones(self, store: str) -> int:
        """Delete ``store``'s tombstones at or below the lowest watermark of the collection's sinks
        (none while a sink has no watermark): no change older than them can come any more
        (docs/design.md §6). Returns that watermark (0: nothing collected)."""
        with qdrant_errors("reading the sinks' positions", self.where):
            found, _ = self.client.scroll(
                self.positions,
                scroll_filter=models.Filter(
                    must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key="sink"))]
                ),
                limit=1000,
                with_payload=True,
            )
        marks = [position_of(p.payload).watermark() for p in found if p.payload]
        if not marks or any(m is None for m in marks):
            return 0
        lowest = min(m.seq for m in marks if m is not None)
        old = models.Filter(
            must=[
                models.FieldCondition(key=_STORE, match=models.MatchValue(value=store)),
                models.FieldCondition(key=SEQ, range=models.Range(lte=lowest)),
            ],
            must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=_TOMBSTONE))],
        )
        with qdrant_errors("collecting tombstones", self.where):
            self.client.delete(self.positions, models.FilterSelector(filter=old))
        return lowest

    def legacy_tombstones(self) -> int:
        """Tombstones of versions that did not name the store (no longer read; docs/qdrant.md)."""
        legacy = models.Filter(
            must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=_STORE))],
            must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=_TOMBSTONE))],
        )
        with qdrant_errors("counting tombstones", self.where):
            return int(self.client.count(self.positions, count_filter=legacy, exact=True).count)


def _vector_of(write: PointWrite, vectors: Mapping[str, list[float]]) -> list[float]:
    if write.store_vector is not None:
        return vector_from_blob(write.store_vector)
    if write.pending:
        return list(PLACEHOLDER)
    return vectors[str(write.text)]


@dataclass
class State:
    """What a batch's plan needs of the destination."""

    points: dict[int, Payload] = field(default_factory=dict)
    tombstones: dict[int, int] = field(default_factory=dict)  # of the batch's store
    owner: str | None = None  # the store the collection replicates (None: not claimed yet)
