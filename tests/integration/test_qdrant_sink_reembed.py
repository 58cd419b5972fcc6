"""reembed while the live sink keeps applying changes: a point the sink changed is never overwritten.
Both layouts (docs/layouts.md): in the mcp layout the vector is named, ``document`` follows the text,
and a point an MCP client stored (a uuid id) is left as it is."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from qdrant_client import models

from replicator.embedding import load_model
from replicator.sinks.cli import qdrant_sink
from replicator.sinks.qdrant import layout as qlayout
from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings
from replicator.sinks.qdrant.embedder import Embedder
from replicator.sinks.qdrant.points import EMBEDDING_MODEL_VERSION, SEQ
from replicator.sinks.qdrant.reader import is_entity_point
from replicator.sinks.qdrant.reembed import ReembedReport, reembed, reembed_page
from replicator.sinks.settings import QdrantSettings
from replicator.testing.events import Stream, entity_image

COLLECTION = "reembed_test"
NEW = "all-MiniLM-L6-v2@test-next"


@pytest.fixture(scope="module")
def model() -> Any:
    return load_model()


@pytest.fixture(params=["caxton", "mcp"])
def sink(tmp_path: Path, model: Any, request: Any) -> Iterator[tuple[QdrantDestination, Stream, list[dict[str, Any]]]]:
    qdrant = QdrantSettings(path=tmp_path / "q", collection=COLLECTION, layout=request.param)
    settings = QdrantSinkSettings(qdrant, sink="live")
    destination = QdrantDestination(settings, model=model)
    destination.start()
    s = Stream()
    images = [entity_image(i, f"entity {i}", "concept", [f"fact {i}"]) for i in range(1, 7)]
    destination.apply(s.batch([s.entity("c", i, image) for i, image in enumerate(images, start=1)]))
    yield destination, s, images
    destination.close()


def labels(destination: QdrantDestination) -> dict[int, dict[str, Any]]:
    """The sink's points by id, each with its vector (the named one in the mcp layout)."""
    points, _ = destination.client.scroll(COLLECTION, limit=100, with_payload=True, with_vectors=True)
    name = qlayout.vector_name(destination.settings.qdrant.layout)
    return {
        int(p.id): {**(p.payload or {}), "vector": p.vector if name is None else p.vector[name]}  # type: ignore[index,call-overload]
        for p in points
        if is_entity_point(p.id)
    }


def test_reembed_labels_every_point_and_converges(sink: Any, model: Any) -> None:
    destination, _, _ = sink
    before = labels(destination)

    report = reembed(destination.client, COLLECTION, Embedder(model, 4, version=NEW), page_size=4, where="test")

    after = labels(destination)
    assert report.seen == 6 and report.reembedded == 6 and report.moved == 0
    assert all(p[EMBEDDING_MODEL_VERSION] == NEW for p in after.values())
    assert all(np.allclose(after[i]["vector"], before[i]["vector"], atol=1e-5) for i in after)
    again = reembed(destination.client, COLLECTION, Embedder(model, 4, version=NEW), stale_only=True, where="test")
    assert again.current == 6 and again.reembedded == 0


def test_a_live_change_in_the_window_before_the_write_is_kept(sink: Any, model: Any) -> None:
    destination, s, images = sink
    page, _ = destination.client.scroll(COLLECTION, limit=100, with_payload=True)
    renamed = {**images[0], "name": "renamed"}

    def live_sink_applies() -> None:  # lands between reembed's re-read and its conditional write
        destination.apply(s.batch([s.entity("u", 20, renamed), s.entity("u", 21, {**images[1], "confidence": 0.2})]))

    report = ReembedReport()
    reembed_page(destination.client, COLLECTION, Embedder(model, 8, version=NEW), page, report, where="t",
                 before_write=live_sink_applies, layout=destination.settings.qdrant.layout)  # fmt: skip

    after = labels(destination)
    assert report.reembedded == 4 and report.moved == 2
    assert after[1]["name"] == "renamed" and after[1][SEQ] == 20 and after[1][EMBEDDING_MODEL_VERSION] != NEW
    expected = model.encode(["renamed concept fact 1"], normalize_embeddings=True)[0]
    assert np.allclose(after[1]["vector"], expected, atol=1e-5)  # the live sink's vector, not the old text's
    assert after[2]["confidence"] == 0.2 and after[2][SEQ] == 21
    assert {after[i][EMBEDDING_MODEL_VERSION] for i in range(3, 7)} == {NEW}


def test_a_point_deleted_by_the_live_sink_is_not_resurrected(sink: Any, model: Any) -> None:
    destination, s, images = sink
    page, _ = destination.client.scroll(COLLECTION, limit=100, with_payload=True)

    def live_delete() -> None:
        destination.apply(s.batch([s.entity("d", 30, images[2])]))

    report = ReembedReport()
    reembed_page(destination.client, COLLECTION, Embedder(model, 8, version=NEW), page, report, where="t",
                 before_write=live_delete, layout=destination.settings.qdrant.layout)  # fmt: skip

    assert 3 not in labels(destination) and report.reembedded == 5


def test_cli_reembeds_a_local_collection(sink: Any) -> None:
    destination, _, _ = sink
    path = destination.settings.qdrant.path
    destination.close()  # local mode: one client per directory

    layout = destination.settings.qdrant.layout
    result = CliRunner().invoke(
        qdrant_sink, ["reembed", "--path", str(path), "--collection", COLLECTION, "--layout", layout]
    )

    assert result.exit_code == 0, result.output
    assert "6 of 6 points re-embedded" in result.output


def test_the_mcp_layout_keeps_its_document_and_leaves_an_mcp_clients_point_alone(model: Any, tmp_path: Path) -> None:
    qdrant = QdrantSettings(path=tmp_path / "q", collection=COLLECTION, layout="mcp")
    destination = QdrantDestination(QdrantSinkSettings(qdrant, sink="live"), model=model)
    destination.start()
    try:
        s = Stream()
        destination.apply(s.batch([s.entity("c", 1, entity_image(1, "Ada", "person", ["wrote the first program"]))]))
        stored = "a memory an agent stored through mcp-server-qdrant"
        foreign = str(uuid.uuid4())
        vector = [float(x) for x in model.encode([stored], normalize_embeddings=True)[0]]
        point = models.PointStruct(id=foreign, vector={qlayout.VECTOR_NAME: vector},
                                   payload={"document": stored, "metadata": None})  # fmt: skip
        destination.client.upsert(COLLECTION, [point])

        report = reembed(destination.client, COLLECTION, Embedder(model, 4, version=NEW), where="test")

        after = labels(destination)
        assert report.reembedded == 1 and report.foreign == 1, report
        assert after[1][EMBEDDING_MODEL_VERSION] == NEW and after[1]["document"] == "Ada person wrote the first program"
        [kept] = destination.client.retrieve(COLLECTION, [foreign], with_payload=True)
        assert kept.payload == {"document": stored, "metadata": None}
    finally:
        destination.close()
