"""384-d vectors from the real packaged model, upserted and searched in qdrant-client local mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from replicator.embedding import DIMENSIONS, embed, entity_text, load_model
from replicator.sinks.settings import QdrantSettings
from replicator.stack.smoke import SAMPLE_ENTITIES, qdrant_roundtrip


def test_model_loads_offline_and_gives_unit_384d_vectors() -> None:
    model = load_model()
    [vector] = embed(model, [entity_text("Ada Lovelace", "person", ["wrote the first program"])])

    assert len(vector) == DIMENSIONS
    assert sum(x * x for x in vector) == pytest.approx(1.0, abs=1e-5)


def test_vectors_upserted_in_local_mode_are_searchable_and_persist(tmp_path: Path) -> None:
    settings = QdrantSettings(path=tmp_path / "qdrant", collection="smoke")

    result = qdrant_roundtrip(settings, query="which database can replicate changes?")

    assert result.hits[0][0] == "PostgreSQL"
    assert result.vector_norms == pytest.approx([1.0] * len(SAMPLE_ENTITIES), abs=1e-5)
    assert result.hits[0][1] > result.hits[1][1]
    reopened = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        assert reopened.count("smoke").count == len(SAMPLE_ENTITIES)
    finally:
        reopened.close()


def test_semantic_query_finds_the_person(tmp_path: Path) -> None:
    result = qdrant_roundtrip(QdrantSettings(path=tmp_path / "q", collection="c"), query="a pioneer of programming")

    assert result.hits[0][0] == "Ada Lovelace"
