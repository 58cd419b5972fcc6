"""The Qdrant sink during a snapshot, against qdrant-client local mode and the real packaged model.

The source's snapshot publishes every entity before any embedding (it reads the tables in order), so
an entity arrives in an earlier batch than its stored vector. The sink writes a snapshot entity
pending (no model call) and computes a vector only for the points still pending once its watermark
passes the snapshot: the entities that have no embedding in the store."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from replicator.embedding import load_model
from replicator.sinks.layouts import CAXTON, MCP
from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings
from replicator.sinks.qdrant.points import (
    COMPUTED,
    EMBEDDING_SOURCE,
    PENDING,
    STORE,
    blob_from_vector,
    vector_from_text,
    vector_text,
)
from replicator.sinks.settings import QdrantSettings
from replicator.testing.events import Stream, entity_image, text_of

COLLECTION = "snapshot_test"
W = 40  # the snapshot's read seq: every snapshot event carries it
WITH_VECTORS = 6  # entities 1..6 have a stored embedding; 7 and 8 have none


@pytest.fixture(scope="module")
def model() -> Any:
    return load_model()


def _sink(path: Path, model: Any, layout: str) -> QdrantDestination:
    settings = QdrantSinkSettings(QdrantSettings(path=path, collection=COLLECTION, layout=layout), sink="snap")
    destination = QdrantDestination(settings, model=model)
    destination.start()
    return destination


@pytest.fixture(params=[CAXTON, MCP])
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sink(tmp_path: Path, model: Any, layout: str) -> Iterator[QdrantDestination]:
    destination = _sink(tmp_path / "q", model, layout)
    yield destination
    destination.close()


def _stored_vector(i: int) -> bytes:
    return struct.pack("<384f", *([0.0] * (i - 1) + [1.0] + [0.0] * (384 - i)))


def _points(sink: QdrantDestination) -> dict[int, tuple[dict[str, Any], list[float]]]:
    found, _ = sink.client.scroll(COLLECTION, limit=100, with_payload=True, with_vectors=True)
    return {int(p.id): (dict(p.payload or {}), list(vector_from_text(vector_text(p.vector)) or ())) for p in found}


def _snapshot(s: Stream) -> tuple[list[Any], list[Any], list[Any]]:
    images = [entity_image(i, f"entity {i}", "concept", [f"fact {i}"]) for i in range(1, 9)]
    entities = [s.entity("r", W, image) for image in images]
    embeddings = [s.embedding(W, i, _stored_vector(i), text_of(images[i - 1]), op="r") for i in range(1, 7)]
    heartbeats = [s.heartbeat(s.entities, W + 1), s.heartbeat(s.embeddings, W + 1)]
    return entities, embeddings, heartbeats


def test_a_snapshot_computes_vectors_only_for_entities_without_a_stored_one(sink: QdrantDestination,
                                                                             model: Any) -> None:  # fmt: skip
    s = Stream()
    entities, embeddings, heartbeats = _snapshot(s)

    sink.apply(s.batch(entities))
    assert sink.stats.computed == 0, "the entities' vectors were computed before their stored ones came"
    assert {p[EMBEDDING_SOURCE] for p, _ in _points(sink).values()} == {PENDING}
    sink.apply(s.batch(embeddings))
    sink.apply(s.batch(heartbeats))  # the watermark passes the snapshot: no stored vector comes any more

    points = _points(sink)
    assert sink.stats.computed == 2 and sink.stats.filled == 2
    for i in range(1, WITH_VECTORS + 1):
        payload, vector = points[i]
        assert payload[EMBEDDING_SOURCE] == STORE and blob_from_vector(vector) == _stored_vector(i)
    for i in (7, 8):
        payload, vector = points[i]
        assert payload[EMBEDDING_SOURCE] == COMPUTED and payload["name"] == f"entity {i}"
        expected = model.encode([f"entity {i} concept fact {i}"], normalize_embeddings=True)[0]
        assert np.allclose(vector, expected, atol=1e-5)
    assert sink.describe() == {"entities": 8}


def test_points_left_pending_by_a_crashed_sink_are_filled_by_the_next_one(tmp_path: Path, model: Any,
                                                                          layout: str) -> None:  # fmt: skip
    s = Stream()
    entities, embeddings, heartbeats = _snapshot(s)
    first = _sink(tmp_path / "q", model, layout)
    first.apply(s.batch(entities))
    first.close()  # stopped after writing the pending points and their position

    second = _sink(tmp_path / "q", model, layout)
    second.apply(s.batch(embeddings))
    second.apply(s.batch(heartbeats))
    sources = {i: p[EMBEDDING_SOURCE] for i, (p, _) in _points(second).items()}
    second.close()

    assert sources == {**dict.fromkeys(range(1, 7), STORE), 7: COMPUTED, 8: COMPUTED}
    assert first.stats.computed == 0 and second.stats.computed == 2
