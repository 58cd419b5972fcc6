"""Read the store, Neo4j and Qdrant into the same :mod:`replicator.validation.model` values.

* :class:`StoreReader`: the SQLite file opened read-only (URI ``mode=ro``), queries of one call in
  one deferred read transaction: in WAL mode a reader never blocks the writer and sees one
  consistent state.
* The graph is read by the Neo4j sink's own reader (:mod:`replicator.sinks.neo4j.reader`).
* :class:`QdrantReader`: points of the collection (point id = entity id), payload = entity fields.

All readers block; each raises MigrateError (with a hint) when its backend cannot be read.
"""

from __future__ import annotations

import sqlite3
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from replicator.capture.storefile import sqlite_uri
from replicator.capture.triggers import CHANGELOG, META, changelog_rows, head_seq
from replicator.sinks.qdrant.points import VECTOR_BYTES
from replicator.store.schema import count_rows, unpack_vector
from replicator.validation.errors import MigrateError
from replicator.validation.model import (
    Embedding,
    Entity,
    Keys,
    Relation,
    Snapshot,
    decode_observations,
)

_CHUNK = 500  # ids per IN (...) query: far below SQLite's variable limit
_ENTITY_COLS = (
    "id, name, entity_type, observations, confidence, strength, version, created_at, updated_at, "
    "valid_from, valid_to, metadata"
)
_RELATION_COLS = (
    "r.id, r.from_entity_id, r.to_entity_id, r.relation_type, r.strength, r.confidence, r.created_at, "
    "r.updated_at, r.valid_from, r.valid_to, r.metadata, a.name, b.name"
)
#: Relations with their endpoints' names; callers add the WHERE.
_RELATIONS = (
    f"SELECT {_RELATION_COLS} FROM relations r LEFT JOIN entities a ON a.id = r.from_entity_id "
    "LEFT JOIN entities b ON b.id = r.to_entity_id"
)


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _entity_row(row: Sequence[Any]) -> Entity:
    """A row of ``entities`` with every value as SQLite returns it (its storage class kept)."""
    return Entity(
        id=int(row[0]),
        name=row[1],
        entity_type=row[2],
        observations=decode_observations(row[3]),
        confidence=row[4],
        strength=row[5],
        version=row[6],
        created_at=row[7],
        updated_at=row[8],
        valid_from=row[9],
        valid_to=row[10],
        metadata=row[11],
    )


def _relation_row(row: Sequence[Any]) -> Relation:
    return Relation(
        id=int(row[0]),
        from_entity_id=int(row[1]),
        to_entity_id=int(row[2]),
        relation_type=row[3],
        strength=row[4],
        confidence=row[5],
        created_at=row[6],
        updated_at=row[7],
        valid_from=row[8],
        valid_to=row[9],
        metadata=row[10],
        from_name=row[11],
        to_name=row[12],
    )


def unpack_blob(blob: object) -> tuple[float, ...] | None:
    """The store's embedding BLOB (little-endian float32) as floats; None for a value the Qdrant sink
    does not take as a vector (not a BLOB of VECTOR_BYTES: TEXT, a number, an empty or short BLOB),
    for which it computes one (then checked by its text hash)."""
    if not isinstance(blob, bytes) or len(blob) != VECTOR_BYTES:
        return None
    return tuple(unpack_vector(blob))


class _ByTarget:
    """Relation ids ordered by ``to_entity_id``, read once inside one read transaction. The store has
    no index on ``to_entity_id`` (its ``UNIQUE(from_entity_id, to_entity_id, relation_type)`` serves
    ``from_entity_id`` only), so without this every page of a full comparison scans every relation to
    find those pointing into the page: 100 pages of 1M relations took 15 s of scans."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.targets, self.ids = array("q"), array("q")
        for target, rel_id in conn.execute("SELECT to_entity_id, id FROM relations ORDER BY to_entity_id, id"):
            self.targets.append(target)  # TypeError for a value that is no integer: the caller scans instead
            self.ids.append(rel_id)

    def relation_ids(self, entity_ids: Iterable[int]) -> list[int]:
        """Ids of the relations whose ``to_entity_id`` is one of ``entity_ids``."""
        found: list[int] = []
        for entity_id in entity_ids:
            lo = bisect_left(self.targets, entity_id)
            found.extend(self.ids[lo : bisect_right(self.targets, entity_id, lo)])
        return found


def _lenient_text(data: bytes) -> str:
    # TEXT that is not UTF-8 (a writer may store it) must not stop validation: it reads as lone
    # surrogates, which no destination can hold, so it shows as a difference.
    return data.decode("utf-8", "surrogateescape")


class StoreReader:
    """Read-only access to a store file. Never creates the file, never writes, never takes a write
    lock. Raises MigrateError for a missing, foreign or unreadable file."""

    def __init__(self, path: Path, *, timeout_s: float = 5.0) -> None:
        self.path = path
        if not path.is_file():
            raise MigrateError(
                f"no store at {path}", hint="pass the path of Caxton's memory.db (default ./data/memory.db)"
            )
        try:
            self.conn = sqlite3.connect(sqlite_uri(path, mode="ro"), uri=True, timeout=timeout_s, isolation_level=None)
            self.conn.text_factory = _lenient_text
            self.conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            tables = {str(r[0]) for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise MigrateError(f"{path} is not a readable SQLite database ({exc})", hint="check --db") from exc
        missing = [t for t in ("entities", "relations", "embeddings") if t not in tables]
        if missing:
            self.conn.close()
            raise MigrateError(
                f"{path} is SQLite but not a Caxton memory store: no table {', '.join(missing)}",
                hint="point --db at the memory.db that Caxton's runtime writes",
            )
        self.capture_installed = CHANGELOG in tables and META in tables
        self._paged_reads: int | None = None  # reads of relations by ids in the open transaction
        self._by_target: _ByTarget | None = None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One consistent read: BEGIN (deferred: a read lock on the WAL snapshot only) ... COMMIT."""
        self.conn.execute("BEGIN")
        self._paged_reads = 0
        try:
            yield
        finally:
            self._paged_reads, self._by_target = None, None  # the index holds this transaction's state only
            self.conn.execute("COMMIT")

    def counts(self) -> dict[str, int]:
        return count_rows(self.conn)

    def keys(self) -> Keys:
        return Keys(
            entities=frozenset(int(r[0]) for r in self.conn.execute("SELECT id FROM entities")),
            relations=frozenset(int(r[0]) for r in self.conn.execute("SELECT id FROM relations")),
        )

    def meta(self) -> dict[str, str]:
        """The capture's ``_replicator_meta`` (empty when capture is not installed)."""
        if not self.capture_installed:
            return {}
        return {str(k): str(v) for k, v in self.conn.execute(f"SELECT key, value FROM {META}")}

    def changelog(self) -> tuple[int, int]:
        """(backlog rows, head seq) of the changelog; (0, 0) when capture is not installed."""
        if not self.capture_installed:
            return 0, 0
        return changelog_rows(self.conn), head_seq(self.conn)

    def read(
        self, entity_ids: Iterable[int] | None = None, *, embeddings: bool = True, relations: bool = True
    ) -> Snapshot:
        """All entities (``entity_ids`` None) or those given, every relation touching them (unless
        ``relations`` is False), and their embeddings. Ids the store lacks are simply absent."""
        snap = Snapshot("store")
        if entity_ids is None:
            rows = self.conn.execute(f"SELECT {_ENTITY_COLS} FROM entities ORDER BY id").fetchall()
            snap.entities = {int(r[0]): _entity_row(r) for r in rows}
            snap.relations = {int(r[0]): _relation_row(r) for r in self.conn.execute(_RELATIONS + " ORDER BY r.id")}
            if embeddings:
                self._embeddings(snap, "SELECT entity_id, embedding, model_version, created_at FROM embeddings", [])
            return snap
        ids = sorted(set(entity_ids))
        by_target = self._target_index() if relations else None
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(f"SELECT {_ENTITY_COLS} FROM entities WHERE id IN ({marks})", chunk):
                snap.entities[int(r[0])] = _entity_row(r)
            if relations:
                self._read_touching(snap, chunk, by_target)
            if embeddings:
                sql = "SELECT entity_id, embedding, model_version, created_at FROM embeddings WHERE entity_id IN "
                self._embeddings(snap, f"{sql}({marks})", chunk)
        return snap

    def _target_index(self) -> _ByTarget | None:
        """The relations by target for this transaction, from its second paged read on (one read,
        e.g. a settle round's few keys, scans rather than order every relation); None outside a
        transaction or when a ``to_entity_id`` is no integer."""
        if self._paged_reads is None:
            return None
        self._paged_reads += 1
        if self._by_target is None and self._paged_reads == 2:
            with suppress(TypeError, OverflowError):  # a foreign value in to_entity_id: this transaction scans
                self._by_target = _ByTarget(self.conn)
        return self._by_target

    def _read_touching(self, snap: Snapshot, chunk: Sequence[int], by_target: _ByTarget | None) -> None:
        """Into ``snap``: the relations from or to the entities ``chunk``."""
        marks = ",".join("?" * len(chunk))
        if by_target is None:  # one scan of every relation
            where, params = f"r.from_entity_id IN ({marks}) OR r.to_entity_id IN ({marks})", [*chunk, *chunk]
            for r in self.conn.execute(f"{_RELATIONS} WHERE {where}", params):
                snap.relations[int(r[0])] = _relation_row(r)
            return
        for r in self.conn.execute(f"{_RELATIONS} WHERE r.from_entity_id IN ({marks})", chunk):  # the UNIQUE index
            snap.relations[int(r[0])] = _relation_row(r)
        # by primary key, leaving out those just read (both ends in the chunk) and earlier chunks'
        snap.relations.update(self.read_relations(i for i in by_target.relation_ids(chunk) if i not in snap.relations))

    def _embeddings(self, snap: Snapshot, sql: str, params: Sequence[int]) -> None:
        for r in self.conn.execute(sql, params):
            vector = unpack_blob(r[1])
            if vector is not None:
                snap.embeddings[int(r[0])] = Embedding(int(r[0]), vector, r[2], r[3])

    def read_relations(self, relation_ids: Iterable[int]) -> dict[int, Relation]:
        """The relations with these ids (absent ids are left out)."""
        found: dict[int, Relation] = {}
        ids = sorted(set(relation_ids))
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(f"{_RELATIONS} WHERE r.id IN ({marks})", chunk):
                found[int(r[0])] = _relation_row(r)
        return found

    def embedding_ids(self) -> frozenset[int]:
        return frozenset(int(r[0]) for r in self.conn.execute("SELECT entity_id FROM embeddings"))
