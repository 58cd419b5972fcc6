"""The test writer keeps an entity's embedding in step with its text in every committed state, as
Caxton's runtime does (STORE.md: the embedding is written in the same transaction as the entity).

Why it matters: a cutover fence can fall between any two transactions. A writer that changed the
text in one transaction and the vector in the next left the fenced store with a vector of the old
text, while the Qdrant sink had computed one from the new text, and the demo's post-cutover
validation reported the vector as different.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from replicator.embedding import entity_text
from replicator.store.schema import pack_vector
from replicator.testing.workload import Workload, hash_vector
from replicator.testing.writer import MemoryWriter


def _stale(conn: sqlite3.Connection) -> list[int]:
    """Entities whose stored vector is not the vector of their current text."""
    rows = conn.execute(
        "SELECT e.id, e.name, e.entity_type, e.observations, m.embedding"
        " FROM entities e JOIN embeddings m ON m.entity_id = e.id"
    ).fetchall()
    return [
        int(i) for i, name, kind, obs, blob in rows
        if bytes(blob) != pack_vector(hash_vector(entity_text(name, kind, list(json.loads(obs)))))
    ]  # fmt: skip


class CheckingWriter(MemoryWriter):
    """Checks the store after every committed transaction, from a second connection."""

    checked: int = 0

    def _tx(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        ids = super()._tx(statements)
        with sqlite3.connect(self.path) as other:
            assert _stale(other) == [], f"a committed state holds vectors of old text after {statements[0][0]!r}"
        self.checked += 1
        return ids


def test_every_committed_state_has_vectors_of_the_current_text(tmp_path: Path) -> None:
    MemoryWriter.create(tmp_path / "m.db").close()
    writer = CheckingWriter(tmp_path / "m.db")
    work = Workload(writer, seed=7)
    ops = [work.step() for _ in range(150)]
    assert {"add_observations", "delete_observations", "rename"} <= set(ops)
    assert writer.checked >= 150
