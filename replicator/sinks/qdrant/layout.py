"""The destination layouts of a Qdrant collection (docs/layouts.md): the one owner of what a point
holds beyond the Caxton payload (design §6). The applier writes through it, the readers read back
through it. Pure: no I/O.

* ``caxton`` (the default): one unnamed 384-d cosine vector, payload = the entity fields + labels.
* ``mcp``: also what mcp-server-qdrant (0.8.1) reads and writes: the named vector
  ``fast-all-minilm-l6-v2`` (384, cosine; FastEmbed's name for the same all-MiniLM-L6-v2), payload
  ``document`` = the text the vector was computed from and ``metadata`` = an object naming the
  entity (``{"entity_id", "name", "entity_type"}``, text only: the server's Entry wants an object).
  The entity's own ``metadata`` column (the writer's JSON text) is kept under ``caxton_metadata``;
  every other Caxton field keeps its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from qdrant_client import models

from replicator.embedding import DIMENSIONS
from replicator.events.values import text_of
from replicator.sinks.layouts import MCP

#: FastEmbedProvider's vector name for sentence-transformers/all-MiniLM-L6-v2 (mcp-server-qdrant 0.8.1).
VECTOR_NAME: Final = "fast-all-minilm-l6-v2"
DOCUMENT: Final = "document"
METADATA: Final = "metadata"
EXACT_METADATA: Final = "caxton_metadata"


def vectors_config(layout: str) -> models.VectorParams | dict[str, models.VectorParams]:
    """The entity collection's vector configuration in ``layout``."""
    params = models.VectorParams(size=DIMENSIONS, distance=models.Distance.COSINE)
    return {VECTOR_NAME: params} if layout == MCP else params


def vector_name(layout: str) -> str | None:
    """The name searches use (``using``); None for the unnamed vector."""
    return VECTOR_NAME if layout == MCP else None


def point_vector(layout: str, vector: list[float]) -> models.VectorStruct:
    """A point's vector in ``layout`` (named in the mcp layout)."""
    if layout == MCP:
        return {VECTOR_NAME: vector}
    return vector


def layout_of(params: object) -> str | None:
    """Which layout a collection's vector configuration is (None: neither, e.g. another size)."""
    ok = models.VectorParams(size=DIMENSIONS, distance=models.Distance.COSINE)
    if isinstance(params, models.VectorParams) and (params.size, params.distance) == (ok.size, ok.distance):
        return "caxton"
    if isinstance(params, dict) and set(params) == {VECTOR_NAME}:
        named = params[VECTOR_NAME]
        if (named.size, named.distance) == (ok.size, ok.distance):
            return MCP
    return None


def to_payload(layout: str, payload: Mapping[str, Any], document: str | None) -> dict[str, Any]:
    """A Caxton payload (whole, or the entity fields of a payload-only update) in ``layout``;
    ``document`` is the text the point's vector embeds (None: unchanged by this write). Pure."""
    out = dict(payload)
    if layout != MCP:
        return out
    if METADATA in out:
        out[EXACT_METADATA] = out.pop(METADATA)
    if "name" in out:
        out[METADATA] = {"entity_id": out.get("id"), "name": text_of(out.get("name")),
                         "entity_type": text_of(out.get("entity_type"))}  # fmt: skip
    if document is not None:
        out[DOCUMENT] = document
    return out


def from_payload(layout: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`to_payload`. A point without entity fields (a store vector awaiting its
    entity) has no metadata either way; an absent ``caxton_metadata`` is a NULL. Pure."""
    out = dict(payload)
    if layout != MCP:
        return out
    out.pop(DOCUMENT, None)
    exact = out.pop(EXACT_METADATA, None)
    if "name" in out:
        out[METADATA] = exact
    else:
        out.pop(METADATA, None)
    return out
