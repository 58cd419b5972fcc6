"""The mcp layout of a Qdrant collection (sinks/qdrant/layout.py, docs/layouts.md): what
mcp-server-qdrant reads, written and read back by one module."""

from __future__ import annotations

from qdrant_client import models

from replicator.sinks.qdrant.layout import (
    VECTOR_NAME,
    from_payload,
    layout_of,
    point_vector,
    to_payload,
    vectors_config,
)

ENTITY = {"id": 7, "name": "Ada", "entity_type": "person", "observations": ["wrote"], "metadata": '{"a": 1}',
          "_seq": 3}  # fmt: skip


def test_the_mcp_payload_is_what_the_server_reads_and_keeps_every_caxton_field() -> None:
    payload = to_payload("mcp", ENTITY, "Ada person wrote")
    assert payload["document"] == "Ada person wrote"
    assert payload["metadata"] == {"entity_id": 7, "name": "Ada", "entity_type": "person"}  # an object: Entry
    assert payload["caxton_metadata"] == '{"a": 1}'
    assert from_payload("mcp", payload) == ENTITY


def test_a_null_metadata_survives_qdrant_dropping_null_keys() -> None:
    # Local mode's set_payload removes a key set to None: absent means NULL in the mcp layout.
    payload = to_payload("mcp", {**ENTITY, "metadata": None}, None)
    del payload["caxton_metadata"]
    assert from_payload("mcp", payload)["metadata"] is None


def test_a_payload_only_update_leaves_the_document_alone() -> None:
    assert "document" not in to_payload("mcp", ENTITY, None)


def test_the_caxton_layout_is_unchanged() -> None:
    assert to_payload("caxton", ENTITY, "text") == ENTITY == from_payload("caxton", ENTITY)
    assert point_vector("caxton", [1.0]) == [1.0]


def test_vectors_are_named_as_fastembed_names_the_model() -> None:
    assert VECTOR_NAME == "fast-all-minilm-l6-v2"
    assert point_vector("mcp", [1.0]) == {VECTOR_NAME: [1.0]}
    assert layout_of(vectors_config("mcp")) == "mcp" and layout_of(vectors_config("caxton")) == "caxton"
    assert layout_of(models.VectorParams(size=3, distance=models.Distance.COSINE)) is None
