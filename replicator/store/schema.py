"""The store's tables, exactly as Caxton's writer creates them (STORE.md, "Schema")."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence
from typing import Final

TABLES: Final = ("entities", "relations", "embeddings")

#: Each table's columns in the DDL's order: the one list capture, sinks and validation derive from.
ENTITY_COLUMNS: Final = (
    "id", "name", "entity_type", "observations", "confidence", "strength", "version",
    "created_at", "updated_at", "valid_from", "valid_to", "metadata",
)  # fmt: skip
RELATION_COLUMNS: Final = (
    "id", "from_entity_id", "to_entity_id", "relation_type", "strength", "confidence",
    "created_at", "updated_at", "valid_from", "valid_to", "metadata",
)  # fmt: skip
EMBEDDING_COLUMNS: Final = ("entity_id", "embedding", "model_version", "created_at")

DDL: Final = """
CREATE TABLE IF NOT EXISTS entities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT UNIQUE NOT NULL,
    entity_type TEXT NOT NULL,
    observations TEXT NOT NULL,
    confidence REAL DEFAULT 1.0,
    strength REAL DEFAULT 1.0,
    version INTEGER DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    valid_from INTEGER,
    valid_to INTEGER,
    metadata TEXT
);
CREATE TABLE IF NOT EXISTS relations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    from_entity_id INTEGER NOT NULL,
    to_entity_id INTEGER NOT NULL,
    relation_type TEXT NOT NULL,
    strength REAL DEFAULT 1.0,
    confidence REAL DEFAULT 1.0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    valid_from INTEGER,
    valid_to INTEGER,
    metadata TEXT,
    FOREIGN KEY (from_entity_id) REFERENCES entities(id) ON DELETE CASCADE,
    FOREIGN KEY (to_entity_id) REFERENCES entities(id) ON DELETE CASCADE,
    UNIQUE(from_entity_id, to_entity_id, relation_type)
);
CREATE TABLE IF NOT EXISTS embeddings (
    entity_id INTEGER PRIMARY KEY,
    embedding BLOB NOT NULL,
    model_version TEXT NOT NULL DEFAULT 'all-MiniLM-L6-v2',
    created_at INTEGER NOT NULL,
    FOREIGN KEY (entity_id) REFERENCES entities(id) ON DELETE CASCADE
);
"""

#: The pragmas the writer runs with (STORE.md): WAL, cascading foreign keys, a busy timeout.
WRITER_PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
)


def count_rows(conn: sqlite3.Connection, tables: Sequence[str] = TABLES) -> dict[str, int]:
    """Rows per table (read-only; within the caller's transaction, if any)."""
    return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}


def pack_vector(values: Sequence[float]) -> bytes:
    """The store's embedding BLOB format: little-endian float32 (STORE.md)."""
    return struct.pack(f"<{len(values)}f", *values)


def unpack_vector(blob: bytes) -> list[float]:
    """Inverse of pack_vector (float32 -> float is exact). Raises struct.error for a length that is
    not a multiple of 4."""
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))
