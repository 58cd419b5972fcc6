"""``replicator export``: the store's content as one JSON document (seed, "Migration Tools and CLI").

Format (``FORMAT_VERSION`` 1)::

    {"entities": [{id, name, entity_type, observations: [str], confidence, strength, version,
                   created_at, updated_at, valid_from, valid_to, metadata: str|null}, ...],
     "relations": [{id, from_entity_id, to_entity_id, from_name, to_name, relation_type, strength,
                    confidence, created_at, updated_at, valid_from, valid_to, metadata}, ...],
     "embeddings": [{entity_id, model_version, created_at, vector_b64}, ...],   # --with-embeddings
     "metadata": {"format": "caxton-memory-export", "version": 1, "replicator_version": ...,
                  "exported_at": ISO-8601, "counts": {...}, "store_id", "head_seq" (capture installed)}}

``metadata`` stays the writer's JSON *text* and ``observations`` keep their order, so an import
reproduces the rows exactly; ``vector_b64`` is the store's BLOB (384 little-endian float32) in base64.
The store is read in one read transaction (consistent; the writer is never blocked). Rows are
ordered by id, keys sorted, so two exports of the same content are equal but for ``exported_at``.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from replicator import __version__
from replicator.validation.store import StoreReader

FORMAT: Final = "caxton-memory-export"
FORMAT_VERSION: Final = 1


def export_document(store_path: Path, *, with_embeddings: bool = False) -> dict[str, Any]:
    """The export of the store at ``store_path`` as a JSON-ready dict. Read-only; raises MigrateError."""
    with StoreReader(store_path) as store, store.transaction():
        meta = store.meta()
        head = store.changelog()[1] if store.capture_installed else None
        entities, relations = _entities(store.conn), _relations(store.conn)
        embeddings = _embeddings(store.conn) if with_embeddings else None
    doc: dict[str, Any] = {"entities": entities, "relations": relations}
    if embeddings is not None:
        doc["embeddings"] = embeddings
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "replicator_version": __version__,
        "exported_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        # What the file holds (so an import reproduces them): no embedding count without embeddings.
        "counts": {"entities": len(entities), "relations": len(relations)}
        | ({} if embeddings is None else {"embeddings": len(embeddings)}),
        "with_embeddings": with_embeddings,
    }
    if "store_id" in meta:
        metadata["store_id"] = meta["store_id"]
    if head is not None:  # the changelog head the rows were read at: an import writes them at this seq
        metadata["head_seq"] = head
    doc["metadata"] = metadata
    return doc


def _entities(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [
        {
            "id": r[0],
            "name": r[1],
            "entity_type": r[2],
            "observations": _observations(r[3]),
            "confidence": r[4],
            "strength": r[5],
            "version": r[6],
            "created_at": r[7],
            "updated_at": r[8],
            "valid_from": r[9],
            "valid_to": r[10],
            "metadata": r[11],
        }
        for r in conn.execute(
            "SELECT id, name, entity_type, observations, confidence, strength, version, created_at, "
            "updated_at, valid_from, valid_to, metadata FROM entities ORDER BY id"
        )
    ]


def _relations(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [
        {
            "id": r[0],
            "from_entity_id": r[1],
            "to_entity_id": r[2],
            "from_name": r[11],
            "to_name": r[12],
            "relation_type": r[3],
            "strength": r[4],
            "confidence": r[5],
            "created_at": r[6],
            "updated_at": r[7],
            "valid_from": r[8],
            "valid_to": r[9],
            "metadata": r[10],
        }
        for r in conn.execute(
            "SELECT r.id, r.from_entity_id, r.to_entity_id, r.relation_type, r.strength, r.confidence, "
            "r.created_at, r.updated_at, r.valid_from, r.valid_to, r.metadata, a.name, b.name "
            "FROM relations r LEFT JOIN entities a ON a.id = r.from_entity_id "
            "LEFT JOIN entities b ON b.id = r.to_entity_id ORDER BY r.id"
        )
    ]


def _embeddings(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [
        {
            "entity_id": r[0],
            "model_version": r[2],
            "created_at": r[3],
            "vector_b64": base64.b64encode(r[1]).decode("ascii"),
        }
        for r in conn.execute(
            "SELECT entity_id, embedding, model_version, created_at FROM embeddings ORDER BY entity_id"
        )
    ]


def _observations(text: str) -> Any:  # noqa: ANN401 - whatever JSON the writer stored
    """The decoded array; text that is not JSON is exported as the raw string (import keeps it)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def write_export(doc: dict[str, Any], out: TextIO) -> None:
    """Write the document as indented JSON with sorted keys (stable, diff-friendly)."""
    json.dump(doc, out, indent=1, sort_keys=True, ensure_ascii=False)
    out.write("\n")
