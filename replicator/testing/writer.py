"""A writer that behaves like Caxton's agent runtime: the knowledge-graph memory tools
(create_entities, add_observations, delete_observations, delete_entities, create_relations,
delete_relations) plus renames and embeddings, each call its own
transaction (a text change and its new embedding in one).

Used by tests, benchmarks and ``replicator demo`` as the live writer. Blocking (sqlite3).
Every method raises sqlite3.Error as the real writer would (e.g. a fenced store refuses writes).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replicator.store.schema import DDL, WRITER_PRAGMAS, pack_vector

MODEL_VERSION = "all-MiniLM-L6-v2"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class MemoryWriter:
    """One connection to a store, configured like the runtime's (WAL, foreign keys, busy timeout)."""

    path: Path
    busy_timeout_ms: int = 5000
    conn: sqlite3.Connection = field(init=False)

    def __post_init__(self) -> None:
        # check_same_thread=False: a writer may be built on one thread and driven by another (one at a time).
        self.conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        for pragma in WRITER_PRAGMAS:
            self.conn.execute(pragma)
        self.conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")

    @classmethod
    def create(cls, path: Path, busy_timeout_ms: int = 5000) -> MemoryWriter:
        """Create (or open) a store with the writer's schema."""
        writer = cls(path, busy_timeout_ms)
        writer.conn.executescript(DDL)
        return writer

    def close(self) -> None:
        self.conn.close()

    def _tx(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one IMMEDIATE transaction; returns each statement's lastrowid."""
        ids: list[int] = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                ids.append(self.conn.execute(sql, params).lastrowid or 0)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return ids

    def create_entity(
        self,
        name: str,
        entity_type: str,
        observations: Sequence[str] = (),
        *,
        confidence: float = 1.0,
        metadata: dict[str, Any] | None = None,
        embedding: Sequence[float] | None = None,
    ) -> int:
        """Insert an entity (and its embedding, in the same transaction, as the runtime does)."""
        ts = now_ms()
        stmts: list[tuple[str, Sequence[Any]]] = [
            (
                "INSERT INTO entities (name, entity_type, observations, confidence, created_at, updated_at, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    entity_type,
                    json.dumps(list(observations)),
                    confidence,
                    ts,
                    ts,
                    None if metadata is None else json.dumps(metadata),
                ),
            )
        ]
        if embedding is not None:
            stmts.append(
                (
                    "INSERT INTO embeddings (entity_id, embedding, model_version, created_at)"
                    " VALUES (last_insert_rowid(), ?, ?, ?)",
                    (pack_vector(embedding), MODEL_VERSION, ts),
                )
            )
        return self._tx(stmts)[0]

    def entity_id(self, name: str) -> int | None:
        row = self.conn.execute("SELECT id FROM entities WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def observations(self, entity_id: int) -> list[str]:
        row = self.conn.execute("SELECT observations FROM entities WHERE id = ?", (entity_id,)).fetchone()
        return [] if row is None else list(json.loads(row[0]))

    def set_observations(
        self, entity_id: int, observations: Sequence[str], embedding: Sequence[float] | None = None
    ) -> None:
        """add_observations / delete_observations: the runtime rewrites the JSON array (and, given
        ``embedding``, the entity's vector in the same transaction, as the runtime does)."""
        self._tx(
            [
                (
                    "UPDATE entities SET observations = ?, updated_at = ?, version = version + 1 WHERE id = ?",
                    (json.dumps(list(observations)), now_ms(), entity_id),
                ),
                *self._embedding_upsert(entity_id, embedding),
            ]
        )

    def add_observations(self, entity_id: int, new: Sequence[str]) -> None:
        self.set_observations(entity_id, [*self.observations(entity_id), *new])

    def rename(self, entity_id: int, new_name: str, embedding: Sequence[float] | None = None) -> None:
        self._tx(
            [
                (
                    "UPDATE entities SET name = ?, updated_at = ?, version = version + 1 WHERE id = ?",
                    (new_name, now_ms(), entity_id),
                ),
                *self._embedding_upsert(entity_id, embedding),
            ]
        )

    def set_confidence(self, entity_id: int, confidence: float) -> None:
        self._tx(
            [("UPDATE entities SET confidence = ?, updated_at = ? WHERE id = ?", (confidence, now_ms(), entity_id))]
        )

    def set_embedding(self, entity_id: int, vector: Sequence[float], model_version: str = MODEL_VERSION) -> None:
        self._tx(self._embedding_upsert(entity_id, vector, model_version))

    @staticmethod
    def _embedding_upsert(
        entity_id: int, vector: Sequence[float] | None, model_version: str = MODEL_VERSION
    ) -> list[tuple[str, Sequence[Any]]]:
        if vector is None:
            return []
        return [
            (
                "INSERT INTO embeddings (entity_id, embedding, model_version, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(entity_id) DO UPDATE SET embedding = excluded.embedding,"
                " model_version = excluded.model_version, created_at = excluded.created_at",
                (entity_id, pack_vector(vector), model_version, now_ms()),
            )
        ]

    def delete_entity(self, entity_id: int) -> None:
        """delete_entities: relations and the embedding go with it (ON DELETE CASCADE)."""
        self._tx([("DELETE FROM entities WHERE id = ?", (entity_id,))])

    def create_relation(
        self,
        from_id: int,
        to_id: int,
        relation_type: str,
        *,
        strength: float = 1.0,
        metadata: dict[str, Any] | None = None,
    ) -> int:
        ts = now_ms()
        return self._tx(
            [
                (
                    "INSERT INTO relations (from_entity_id, to_entity_id, relation_type, strength,"
                    " created_at, updated_at, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        from_id,
                        to_id,
                        relation_type,
                        strength,
                        ts,
                        ts,
                        None if metadata is None else json.dumps(metadata),
                    ),
                )
            ]
        )[0]

    def set_relation_strength(self, relation_id: int, strength: float) -> None:
        self._tx(
            [("UPDATE relations SET strength = ?, updated_at = ? WHERE id = ?", (strength, now_ms(), relation_id))]
        )

    def delete_relation(self, relation_id: int) -> None:
        self._tx([("DELETE FROM relations WHERE id = ?", (relation_id,))])
