"""``replicator stats``: counts and sizes per backend (seed, "Troubleshooting": entity count mismatch).

* store: file size (plus WAL), entities, relations, embeddings, and with capture installed the
  store_id, changelog backlog (rows not yet published) and head seq;
* Neo4j: entity nodes, placeholder nodes, relationships between entity nodes, tombstones;
* Qdrant: points in the collection and in ``<collection>_positions`` (positions and tombstones).

Read-only everywhere; blocks; raises MigrateError when a backend asked for cannot be read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.neo4j.reader import GraphReader
from replicator.sinks.qdrant.reader import QdrantReader
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.validation.store import StoreReader


def store_stats(path: Path) -> dict[str, Any]:
    wal = Path(f"{path}-wal")
    with StoreReader(path) as store, store.transaction():
        out: dict[str, Any] = {
            "path": str(path),
            "file_bytes": path.stat().st_size,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
            **store.counts(),
            "capture_installed": store.capture_installed,
        }
        if store.capture_installed:
            backlog, head = store.changelog()
            out.update(store_id=store.meta().get("store_id"), changelog_backlog=backlog, changelog_head_seq=head)
    return out


def neo4j_stats(settings: Neo4jSettings, model: GraphModel | None = None) -> dict[str, Any]:
    model = model or GraphModel()
    with GraphReader.connect(settings, model) as graph:
        return {"uri": settings.uri, "label": model.entity_label, **graph.counts(), "tombstones": graph.tombstones()}


def qdrant_stats(settings: QdrantSettings, api_key: str | None = None) -> dict[str, Any]:
    with QdrantReader(settings, api_key=api_key) as qdrant:
        out: dict[str, Any] = {
            "location": settings.url or str(settings.path),
            "collection": settings.collection,
            **qdrant.counts(),
        }
        positions = f"{settings.collection}_positions"
        if qdrant.client.collection_exists(positions):
            out["positions_points"] = int(qdrant.client.count(positions, exact=True).count)
    return out


def format_stats(stats: dict[str, dict[str, Any]]) -> str:
    """Plain text, one backend per block."""
    lines: list[str] = []
    for backend, values in stats.items():
        lines.append(f"{backend}:")
        lines.extend(f"  {k}: {v}" for k, v in values.items())
    return "\n".join(lines)
