"""Applying Neo4j's changelog to the store, through the store's own schema and constraints.

One SQLite transaction per batch of whole Neo4j transactions: the rows, their recomputed embeddings
and the position (``_replicator_reverse_position``, the destination owns its position) commit
together, so a ``kill -9`` anywhere loses nothing and applies nothing twice. Inside it the
``REVERSE_WRITING`` meta row (capture/triggers.py) is set and removed again before COMMIT: the
refusal triggers let these writes through; what capture's triggers recorded of them is discarded
(``discard_since``) before COMMIT too, so they are never published as forward changes.

Per row (docs/reverse.md): an entity upsert writes every column from the node's image (a property
the node lacks is NULL; ``created_at``/``updated_at`` default to the change's commit time and
``observations`` to ``[]``, the store's NOT NULL columns), read through the model's layout as its
readers read it (``layout.stored_props``: the mcp layout's ``type`` and exact observations);
observations are stored as the writer's JSON array text; a relation takes its endpoints' ids and its
``relation_type`` property, else the Neo4j type (``layout.relation_type_of``). Deletes rely on the
store's ON DELETE CASCADE. A row the store's constraints refuse (a name another entity holds, a
second relation with the same (from, to, type), a missing name or endpoint) is set aside in
``_replicator_reverse_parked`` with the reason (aside.py: replaced by a later change of the row that
applies, retried once the store changed): named, never dropped silently, never blocking what
follows; rollback refuses while any is left (cutover/rollback.py). Embeddings of entities whose text
changed are recomputed (``Embed``), in the same transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from replicator.capture.triggers import META, REVERSE_WRITING, discard_since, head_seq
from replicator.embedding import entity_text
from replicator.reverse import aside
from replicator.reverse.changelog import Change
from replicator.sinks.neo4j import layout
from replicator.sinks.neo4j.model import GraphModel
from replicator.store.schema import ENTITY_COLUMNS, RELATION_COLUMNS

POSITION: Final = "_replicator_reverse_position"
DDL: Final = (
    f"CREATE TABLE IF NOT EXISTS {POSITION} (ns TEXT PRIMARY KEY, seq INTEGER NOT NULL, ts_ms INTEGER NOT NULL, "
    "applied_at_ms INTEGER NOT NULL)",
    aside.DDL,
)

#: Texts in, one embedding BLOB (the store's format) per text out, with the model_version to record.
Embed = Callable[[Sequence[str]], tuple[list[bytes], str]]

_TEXT_COLUMNS: Final = ("name", "entity_type", "observations")


@dataclass(frozen=True)
class Position:
    """The last Neo4j transaction applied: its seq, its commit time, and when it was applied (0: unknown)."""

    seq: int
    ts_ms: int
    applied_at_ms: int = 0


@dataclass
class Applied:
    """What one call of :func:`apply` did."""

    transactions: int = 0
    rows: int = 0
    parked: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # set aside before, applied now (aside.retry)
    embedded: int = 0
    position: Position | None = None


def ensure_tables(conn: sqlite3.Connection) -> None:
    """Create the position and parked tables (idempotent; inside the caller's transaction)."""
    for statement in DDL:
        conn.execute(statement)


def read_position(conn: sqlite3.Connection, ns: str) -> Position | None:
    """The last Neo4j transaction applied for namespace ``ns``, None before the first. Read-only."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (POSITION,)).fetchone()
    if exists is None:
        return None
    row = conn.execute(f"SELECT seq, ts_ms, applied_at_ms FROM {POSITION} WHERE ns = ?", (ns,)).fetchone()
    return None if row is None else Position(int(row[0]), int(row[1]), int(row[2]))


def apply(
    conn: sqlite3.Connection, ns: str, changes: Sequence[Change], model: GraphModel, embed: Embed | None
) -> Applied:
    """Apply ``changes`` (whole Neo4j transactions in seq order) past the stored position, and the new
    position, in one SQLite transaction (``conn`` must be in autocommit mode: isolation_level=None).
    Changes at or below the stored position are skipped (idempotent). Blocks on the store's lock.
    Raises sqlite3.Error (nothing applied) or what ``embed`` raises."""
    done = Applied()
    conn.execute("BEGIN IMMEDIATE")
    try:
        captured_up_to = head_seq(conn)  # the changelog rows above it will be our own writes
        conn.execute(f"INSERT INTO {META} (key, value) VALUES (?, '1')", (REVERSE_WRITING,))
        ensure_tables(conn)
        stored = read_position(conn, ns)
        fresh = [c for c in changes if stored is None or c.seq > stored.seq]
        texts_changed: set[int] = set()
        for change in fresh:
            problem = _apply_one(conn, change, model, texts_changed)
            if problem is None:
                aside.replace(conn, ns, change)
            else:
                done.parked.append(aside.park(conn, ns, change, problem))
        if len(done.parked) < len(fresh):  # the store changed: what refused a set-aside row may be gone
            done.retried = aside.retry(conn, ns, lambda c: _apply_one(conn, c, model, texts_changed))
        done.embedded = _embed(conn, texts_changed, embed)
        if fresh:
            last, now = fresh[-1], time.time_ns() // 1_000_000
            conn.execute(
                f"INSERT INTO {POSITION} (ns, seq, ts_ms, applied_at_ms) VALUES (?, ?, ?, ?) ON CONFLICT(ns) DO "
                "UPDATE SET seq = excluded.seq, ts_ms = excluded.ts_ms, applied_at_ms = excluded.applied_at_ms",
                (ns, last.seq, last.ts_ms, now),
            )
            done.position = Position(last.seq, last.ts_ms, now)
        done.transactions = len({c.seq for c in fresh})
        done.rows = len(fresh)
        discard_since(conn, captured_up_to)
        conn.execute(f"DELETE FROM {META} WHERE key = ?", (REVERSE_WRITING,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return done


def _apply_one(conn: sqlite3.Connection, change: Change, model: GraphModel, texts: set[int]) -> str | None:
    """Apply one row inside a savepoint; returns why the store refused it (rolled back), or None."""
    conn.execute("SAVEPOINT reverse_row")
    try:
        if change.op == "d":
            table = "entities" if change.kind == "entity" else "relations"
            conn.execute(f"DELETE FROM {table} WHERE id = ?", (change.id,))
        elif change.kind == "entity":
            _upsert_entity(conn, change, model, texts)
        else:
            _upsert_relation(conn, change, model)
    except (sqlite3.IntegrityError, _Refused) as exc:
        conn.execute("ROLLBACK TO reverse_row")
        conn.execute("RELEASE reverse_row")
        return str(exc)
    conn.execute("RELEASE reverse_row")
    return None


class _Refused(Exception):
    """A row the store cannot take as it is (a missing NOT NULL value, a value SQLite cannot hold)."""


def _value(value: object) -> object:
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, (int, float, str, bytes)):
        return value
    raise _Refused(f"a {type(value).__name__} value the store's column cannot hold: {value!r}")


def _upsert_entity(conn: sqlite3.Connection, change: Change, model: GraphModel, texts: set[int]) -> None:
    props = model.columns(layout.stored_props(model.layout, change.props))
    for required in ("name", "entity_type"):
        if props.get(required) is None:
            raise _Refused(f"the node has no {required} (the store's column is NOT NULL)")
    obs = props.get("observations")
    row: dict[str, object] = {c: _value(props.get(c)) for c in ENTITY_COLUMNS if c != "observations"}
    row["id"] = change.id
    if obs is None:
        row["observations"] = "[]"
    elif isinstance(obs, (str, bytes)):  # the writer's exact value (the mcp layout's caxton_observations)
        row["observations"] = obs
    else:  # a list: the writer's JSON array text
        row["observations"] = json.dumps([str(o) for o in obs])
    for stamp in ("created_at", "updated_at"):
        row[stamp] = change.ts_ms if row[stamp] is None else row[stamp]
    before = conn.execute("SELECT name, entity_type, observations FROM entities WHERE id = ?", (change.id,)).fetchone()
    _upsert(conn, "entities", ENTITY_COLUMNS, row)
    if before is None or tuple(before) != tuple(row[c] for c in _TEXT_COLUMNS):
        texts.add(change.id)


def _upsert_relation(conn: sqlite3.Connection, change: Change, model: GraphModel) -> None:
    props = model.columns(change.props)
    row: dict[str, object] = {c: _value(props.get(c)) for c in RELATION_COLUMNS}
    row.update(id=change.id, from_entity_id=change.from_id, to_entity_id=change.to_id)
    row["relation_type"] = _value(layout.relation_type_of(props, change.rel_type or ""))
    for stamp in ("created_at", "updated_at"):
        row[stamp] = change.ts_ms if row[stamp] is None else row[stamp]
    _upsert(conn, "relations", RELATION_COLUMNS, row)


def _upsert(conn: sqlite3.Connection, table: str, columns: Sequence[str], row: dict[str, object]) -> None:
    names = ", ".join(columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
    conn.execute(
        f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT(id) DO UPDATE SET {updates}",
        [row[c] for c in columns],
    )


def _embed(conn: sqlite3.Connection, entity_ids: set[int], embed: Embed | None) -> int:
    """Recompute the embedding of each entity (still present) whose text changed. Returns how many."""
    if embed is None or not entity_ids:
        return 0
    ids = sorted(entity_ids)
    rows = conn.execute(
        f"SELECT id, name, entity_type, observations FROM entities WHERE id IN ({', '.join('?' for _ in ids)})", ids
    ).fetchall()
    if not rows:
        return 0
    texts = [_text(str(r[1]), str(r[2]), r[3]) for r in rows]
    blobs, model_version = embed(texts)
    now = time.time_ns() // 1_000_000
    for (entity_id, *_), blob in zip(rows, blobs, strict=True):
        conn.execute(
            "INSERT INTO embeddings (entity_id, embedding, model_version, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(entity_id) DO UPDATE SET embedding = excluded.embedding, "
            "model_version = excluded.model_version, created_at = excluded.created_at",
            (entity_id, blob, model_version, now),
        )
    return len(rows)


def _text(name: str, entity_type: str, observations: object) -> str:
    """The store's embedded text (STORE.md); observations that are no JSON array count as one string."""
    try:
        parsed: Any = json.loads(str(observations))
    except ValueError:
        parsed = None
    return entity_text(name, entity_type, [str(o) for o in parsed] if isinstance(parsed, list) else [str(observations)])
