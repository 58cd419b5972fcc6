"""The Qdrant destination against qdrant-client local mode and the real packaged model."""

from __future__ import annotations

import logging
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from replicator.embedding import MODEL_NAME, load_model, model_version
from replicator.sinks.batch import StoreMismatch
from replicator.sinks.errors import DestinationUnavailable
from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings
from replicator.sinks.qdrant.points import (
    COMPUTED,
    EMBEDDING_MODEL_VERSION,
    EMBEDDING_SOURCE,
    SEQ,
    STORE,
    blob_from_vector,
    positions_collection,
    tombstone_point_id,
)
from replicator.sinks.qdrant.reader import read_position
from replicator.sinks.settings import QdrantSettings
from replicator.testing.events import Stream, entity_image, text_of

COLLECTION = "entities_test"


@pytest.fixture(scope="module")
def model() -> Any:
    return load_model()


@pytest.fixture
def sink(tmp_path: Path, model: Any) -> Iterator[QdrantDestination]:
    settings = QdrantSinkSettings(QdrantSettings(path=tmp_path / "q", collection=COLLECTION), sink="t", encode_batch=16)
    destination = QdrantDestination(settings, model=model)
    assert destination.start() is None
    yield destination
    destination.close()


def encode(model: Any, text: str) -> list[float]:
    return [float(x) for x in model.encode([text], normalize_embeddings=True)[0].tolist()]


def snapshot(client: QdrantClient) -> dict[int, tuple[dict[str, Any], list[float]]]:
    points, _ = client.scroll(COLLECTION, limit=1000, with_payload=True, with_vectors=True)
    return {int(p.id): (dict(p.payload or {}), list(p.vector)) for p in points}  # type: ignore[arg-type]


def point(client: QdrantClient, entity_id: int) -> tuple[dict[str, Any], list[float]] | None:
    return snapshot(client).get(entity_id)


def history(s: Stream) -> list[Any]:
    """Create, rename, observation edit, confidence-only update, a second entity, a delete."""
    ada = entity_image(1, "Ada", "person", ["wrote programs"])
    bob = entity_image(2, "Bob", "person", ["builds bridges"])
    return [
        s.entity("c", 1, ada),
        s.entity("c", 2, bob),
        s.entity("u", 3, {**ada, "name": "Ada Lovelace"}),
        s.entity("u", 4, {**ada, "name": "Ada Lovelace", "observations": ["wrote programs", "analytical engine"]}),
        s.entity("u", 5, {**ada, "name": "Ada Lovelace", "observations": ["wrote programs", "analytical engine"],
                          "confidence": 0.5, "metadata": '{"checked": true}'}),
        s.entity("d", 6, bob),
        s.heartbeat(s.entities, 6),
    ]  # fmt: skip


def test_lifecycle_leaves_the_entity_with_the_vector_of_its_text(sink: QdrantDestination, model: Any) -> None:
    s = Stream()
    events = history(s)
    for event in events[:-1]:  # one batch each, so every step reads the state the previous one left
        sink.apply(s.batch([event]))
    marks = positions_collection(COLLECTION)
    [mark] = sink.client.retrieve(marks, [tombstone_point_id("sample", 2)], with_payload=True)
    assert mark.payload == {"tombstone": 2, "store": "sample", SEQ: 6}
    sink.apply(s.batch(events[-1:]))  # the entities heartbeat alone: no watermark yet, the tombstone stays
    assert len(sink.client.retrieve(marks, [tombstone_point_id("sample", 2)])) == 1
    sink.apply(s.batch([s.heartbeat(s.embeddings, 6)]))  # watermark 6: nothing older than the delete can come
    assert sink.client.retrieve(marks, [tombstone_point_id("sample", 2)]) == []

    payload, vector = point(sink.client, 1)  # type: ignore[misc]
    assert payload["name"] == "Ada Lovelace" and payload["observations"] == ["wrote programs", "analytical engine"]
    assert payload["confidence"] == 0.5 and payload["metadata"] == '{"checked": true}' and payload[SEQ] == 5
    assert payload["embedding_model"] == MODEL_NAME and payload[EMBEDDING_MODEL_VERSION] == model_version()
    assert payload[EMBEDDING_SOURCE] == COMPUTED
    expected = encode(model, "Ada Lovelace person wrote programs analytical engine")
    assert np.allclose(vector, expected, atol=1e-5)
    assert point(sink.client, 2) is None
    # c, c, rename, observation edit: 4 texts; the confidence change was payload-only
    assert sink.stats.computed == 4 and sink.stats.payload_only == 1


def test_replaying_everything_twice_changes_no_point_and_embeds_nothing(sink: QdrantDestination) -> None:
    s = Stream()
    events = history(s)
    sink.apply(s.batch(events))
    before, computed = snapshot(sink.client), sink.stats.computed

    for _ in range(2):
        sink.apply(s.batch(events))
        for start in range(0, len(events), 3):
            sink.apply(s.batch(events[start : start + 3]))

    assert snapshot(sink.client) == before
    assert sink.stats.computed == computed


def test_older_events_after_newer_ones_change_nothing(sink: QdrantDestination) -> None:
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])
    old, new, gone = s.entity("c", 3, ada), s.entity("u", 7, {**ada, "name": "New"}), s.entity("d", 9, ada)
    carl = entity_image(3, "Carl")

    sink.apply(s.batch([new]))
    sink.apply(s.batch([old]))
    assert point(sink.client, 1)[0]["name"] == "New"  # type: ignore[index]
    sink.apply(s.batch([gone, s.entity("c", 8, carl), s.entity("d", 10, carl)]))
    sink.apply(s.batch([old, new, s.entity("c", 8, carl)]))  # a replay of the older creates

    assert point(sink.client, 1) is None and point(sink.client, 3) is None


def test_confidence_change_is_not_re_embedded(sink: QdrantDestination) -> None:
    s = Stream()
    ada = entity_image(1, "Ada", "person", ["x"])
    sink.apply(s.batch([s.entity("c", 1, ada)]))
    vector = point(sink.client, 1)[1]  # type: ignore[index]

    sink.apply(s.batch([s.entity("u", 2, {**ada, "confidence": 0.1, "strength": 0.2, "version": 3})]))

    assert sink.stats.computed == 1 and sink.stats.payload_only == 1
    payload, after = point(sink.client, 1)  # type: ignore[misc]
    assert after == vector and payload["confidence"] == 0.1 and payload["version"] == 3


def store_vector(model: Any, text: str) -> bytes:
    """A unit vector that is *not* what the sink would compute for the entity (so reuse is visible)."""
    return struct.pack("<384f", *model.encode([text], normalize_embeddings=True)[0].tolist())


def test_store_embedding_is_reused_in_the_batch_and_across_batches(sink: QdrantDestination, model: Any) -> None:
    s = Stream()
    ada, bob, eve = (entity_image(i, n, "person", ["x"]) for i, n in ((1, "Ada"), (2, "Bob"), (3, "Eve")))
    blobs = {i: store_vector(model, f"store vector {i}") for i in (1, 2, 3)}

    sink.apply(s.batch([s.entity("c", 1, ada), s.embedding(2, 1, blobs[1], text_of(ada))]))  # same batch
    sink.apply(s.batch([s.embedding(4, 2, blobs[2], text_of(bob))]))  # embedding first
    sink.apply(s.batch([s.entity("c", 3, bob)]))
    sink.apply(s.batch([s.entity("c", 5, eve)]))  # entity first: computed ...
    sink.apply(s.batch([s.embedding(6, 3, blobs[3], text_of(eve))]))  # ... then replaced by the store's

    assert sink.stats.computed == 1 and sink.stats.reused == 3
    for entity_id in (1, 2, 3):
        payload, vector = point(sink.client, entity_id)  # type: ignore[misc]
        # Qdrant re-normalises vectors of a cosine collection: the store's (already unit) vector
        # comes back equal up to the last float32 bit, and nowhere near what the model computes.
        stored = np.frombuffer(blobs[entity_id], dtype="<f4")
        assert np.max(np.abs(np.frombuffer(blob_from_vector(vector), dtype="<f4") - stored)) < 1e-7
        assert not np.allclose(vector, encode(model, text_of(payload)), atol=1e-2)
        assert payload[EMBEDDING_SOURCE] == STORE and payload["name"] in {"Ada", "Bob", "Eve"}


def test_position_is_stored_with_the_batch_and_read_back(sink: QdrantDestination, tmp_path: Path, model: Any) -> None:
    s = Stream()
    sink.apply(s.batch([s.entity("c", 1, entity_image(1, "Ada")), s.heartbeat(s.entities, 1)]))
    sink.apply(s.batch([s.heartbeat(s.embeddings, 1)]))

    stored = read_position(sink.client, COLLECTION, "t")
    assert stored is not None and stored.applied_seq == 1
    assert stored.watermark() is not None and stored.watermark().seq == 1  # type: ignore[union-attr]
    assert sum(stored.offsets.values()) == 3
    sink.close()
    again = QdrantDestination(sink.settings, model=model)
    assert again.start() == stored
    sink._client = again.client  # the fixture closes it


def test_unreachable_server_is_destination_unavailable() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    settings = QdrantSinkSettings(QdrantSettings(url=f"http://127.0.0.1:{port}"), timeout_s=2)
    destination = QdrantDestination(settings)

    with pytest.raises(DestinationUnavailable, match=f"127.0.0.1:{port}"):
        destination.start()
    destination.close()


def test_a_collection_replicates_one_store(sink: QdrantDestination) -> None:
    s = Stream()
    sink.apply(s.batch([s.entity("c", 1, entity_image(1, "Ada", "person"))]))
    other = s.entity("c", 2, entity_image(2, "Bob", "person"))
    assert other.record is not None
    other.record["source"] = {**other.record["source"], "store": "another store"}
    with pytest.raises(StoreMismatch, match="holds the points of store sample"):
        sink.apply(s.batch([other]))
    assert sorted(snapshot(sink.client)) == [1]


def test_tombstones_of_an_older_version_are_ignored(sink: QdrantDestination, caplog: pytest.LogCaptureFixture) -> None:
    """Older versions keyed tombstones by entity id alone: a delete of id 1 at seq 1000 (another
    store's, or this one's before a reinstall) must not stop this store's create of id 1 at seq 5."""
    legacy = str(uuid.uuid5(uuid.NAMESPACE_URL, "replicator:tombstone:1"))
    positions = positions_collection(COLLECTION)
    sink.client.upsert(positions, [models.PointStruct(id=legacy, vector=[1.0], payload={"tombstone": 1, SEQ: 1000})])
    with caplog.at_level(logging.WARNING):
        sink.start()
    assert any("older version" in r.getMessage() and getattr(r, "count", 0) == 1 for r in caplog.records)
    s = Stream()
    sink.apply(s.batch([s.entity("c", 5, entity_image(1, "Ada", "person"))]))
    assert sorted(snapshot(sink.client)) == [1]
