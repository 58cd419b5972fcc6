"""The store's tables, exactly as Caxton's writer creates them (STORE.md, "Schema")."""

from __future__ import annotations

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
