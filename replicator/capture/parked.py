"""Parked rows: changes the source could not publish, kept in the store next to the changelog.

A change is parked when its event is larger than the pipeline's limit (``max_message_bytes`` minus
Kafka's framing) or when it holds a value no event can carry exactly (invalid UTF-8 text, a relation
endpoint that is not an integer, the heartbeats' key -1). Parking never stalls the rest and never
drops anything silently (docs/source.md, "Size limits and parked rows"):

* ``_replicator_parked`` keeps the change (seq, table, op, row id, the images) with its reason, its
  size and the limit it exceeded. The source writes it BEFORE the Kafka transaction that moves past the
  change commits, so a change is always either published or parked (a crash in between parks it again:
  the insert is idempotent). Snapshot rows are parked with op ``r`` and the snapshot's read seq.
* Later changes of the same row still flow: each event carries the whole row, so the destinations
  hold the newest state that fitted; the parked change itself is missing until it is retried.
* ``retry`` re-captures the row's CURRENT state as a new changelog row (a new, higher seq, so per-key
  order holds whatever was published meanwhile): ``u`` with before = after = the current image, as
  ``validate --repair`` does, or ``d`` (before = the parked image) when the row is gone. If that is
  still too large it is parked again, named, under its new seq.
* ``replicator cutover`` refuses while rows are parked; ``uninstall`` counts them as discarded.

Blocking (sqlite3). Writes take the store's write lock with the connection's busy timeout.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Final

from replicator.capture.triggers import CHANGELOG, KEY_COLUMN, NOW_MS, image_sql

PARKED: Final = "_replicator_parked"

PARKED_DDL: Final = f"""CREATE TABLE IF NOT EXISTS {PARKED} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,
    tbl TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('c', 'u', 'd', 'r')),
    row_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    before TEXT,
    after TEXT,
    reason TEXT NOT NULL,
    size_bytes INTEGER,
    limit_bytes INTEGER,
    parked_ms INTEGER NOT NULL,
    retried_seq INTEGER,
    UNIQUE (seq, tbl, row_id)
)"""

_COLUMNS: Final = "id, seq, tbl, op, row_id, ts_ms, reason, size_bytes, limit_bytes, parked_ms, retried_seq"


@dataclass(frozen=True)
class ParkedRow:
    """One parked change. ``retried_seq`` is None while it waits; else the seq of its retry."""

    id: int
    seq: int
    table: str
    op: str
    row_id: int
    ts_ms: int
    reason: str
    size_bytes: int | None
    limit_bytes: int | None
    parked_ms: int
    retried_seq: int | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "seq": self.seq, "table": self.table, "op": self.op, "row_id": self.row_id,
            "ts_ms": self.ts_ms, "reason": self.reason, "size_bytes": self.size_bytes,
            "limit_bytes": self.limit_bytes, "parked_ms": self.parked_ms, "retried_seq": self.retried_seq,
        }  # fmt: skip


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Why:
    """Why a change is parked: ``reason`` names it; ``size`` is its event's size when known."""

    reason: str
    size: int | None
    limit: int


def exists(conn: sqlite3.Connection) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (PARKED,)).fetchone()
    return found is not None


def ensure_table(conn: sqlite3.Connection) -> None:
    """Create the table when absent (stores installed by an older version). Inside a write transaction."""
    if not exists(conn):
        conn.execute(PARKED_DDL)


def park_change(conn: sqlite3.Connection, seq: int, why: Why, state: tuple[str, tuple[str, ...]] | None = None) -> None:
    """Copy changelog row ``seq`` into the parked table with its reason (idempotent: parked once).
    ``state``: (table, columns) when the changelog row holds no image (the triggers record the key
    only): the parked row keeps the row's current image, built in SQL (a Python copy could not carry
    TEXT that is not UTF-8). The caller holds a write transaction."""
    ensure_table(conn)
    after = "c.after"
    if state is not None:
        table, columns = state
        image = image_sql(table, columns, "t")
        after = f"coalesce(c.after, (SELECT {image} FROM {table} AS t WHERE t.{KEY_COLUMN[table]} = c.row_id))"
    conn.execute(
        f"INSERT OR IGNORE INTO {PARKED} (seq, tbl, op, row_id, ts_ms, before, after, reason, size_bytes, "
        f"limit_bytes, parked_ms) SELECT c.seq, c.tbl, c.op, c.row_id, c.ts_ms, c.before, {after}, ?, ?, ?, ? "
        f"FROM {CHANGELOG} AS c WHERE c.seq = ?",
        (why.reason, why.size, why.limit, _now_ms(), seq),
    )


def park_snapshot_row(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], row_id: int, *, read_seq: int, why: Why
) -> None:
    """Park the snapshot's row ``row_id`` of ``table`` (op ``r`` at ``read_seq``); the image is the
    row as it is now, built by the triggers' SQL. The caller holds a write transaction."""
    ensure_table(conn)
    key = KEY_COLUMN[table]
    now = _now_ms()
    conn.execute(
        f"INSERT OR IGNORE INTO {PARKED} (seq, tbl, op, row_id, ts_ms, before, after, reason, size_bytes, "
        f"limit_bytes, parked_ms) SELECT ?, ?, 'r', ?, ?, NULL, {image_sql(table, columns, 't')}, ?, ?, ?, ? "
        f"FROM {table} AS t WHERE t.{key} = ?",
        (read_seq, table, row_id, now, why.reason, why.size, why.limit, now, row_id),
    )


def unpark_uncommitted(conn: sqlite3.Connection, committed_seq: int) -> int:
    """Forget stream changes parked after ``committed_seq``: their Kafka transaction never committed,
    so they are still in the changelog and the source decides about them again (with the current
    limit). Returns how many. The caller holds a write transaction."""
    if not exists(conn):
        return 0
    cursor = conn.execute(f"DELETE FROM {PARKED} WHERE op != 'r' AND retried_seq IS NULL AND seq > ?", (committed_seq,))
    return int(cursor.rowcount)


def list_parked(conn: sqlite3.Connection, *, include_retried: bool = False) -> list[ParkedRow]:
    """Parked changes in seq order (those already retried too when asked). Read-only."""
    if not exists(conn):
        return []
    where = "" if include_retried else "WHERE retried_seq IS NULL"
    rows = conn.execute(f"SELECT {_COLUMNS} FROM {PARKED} {where} ORDER BY seq, id").fetchall()
    return [ParkedRow(*row) for row in rows]


def count_parked(conn: sqlite3.Connection) -> int:
    """Changes parked and not yet retried (0 when the table does not exist). Read-only."""
    if not exists(conn):
        return 0
    return int(conn.execute(f"SELECT count(*) FROM {PARKED} WHERE retried_seq IS NULL").fetchone()[0])


def retry(
    conn: sqlite3.Connection, columns: dict[str, tuple[str, ...]], ids: list[int] | None
) -> list[tuple[ParkedRow, int]]:
    """Re-capture the current state of each parked row (all waiting ones when ``ids`` is None) as a new
    changelog row, and record its seq as the parked row's ``retried_seq``. ``columns``: table -> the
    columns the installed triggers image. Returns (parked row, new seq) pairs. The caller holds a write
    transaction, so the row read and the changelog insert see one state of the store."""
    waiting = [p for p in list_parked(conn) if ids is None or p.id in ids]
    done: list[tuple[ParkedRow, int]] = []
    for parked in waiting:
        table, key = parked.table, KEY_COLUMN[parked.table]
        inserted = conn.execute(
            f"INSERT INTO {CHANGELOG} (tbl, op, row_id, ts_ms, before, after) "
            f"SELECT ?, 'u', ?, {NOW_MS}, img, img FROM (SELECT {image_sql(table, columns[table], 'r')} AS img "
            f"FROM {table} AS r WHERE r.{key} = ?) RETURNING seq",
            (table, parked.row_id, parked.row_id),
        ).fetchone()
        if inserted is None:  # the row is gone: its delete, with the parked image as the before image
            inserted = conn.execute(
                f"INSERT INTO {CHANGELOG} (tbl, op, row_id, ts_ms, before, after) "
                f"SELECT tbl, 'd', row_id, {NOW_MS}, coalesce(after, before), NULL FROM {PARKED} WHERE id = ? "
                "RETURNING seq",
                (parked.id,),
            ).fetchone()
        seq = int(inserted[0])
        conn.execute(f"UPDATE {PARKED} SET retried_seq = ? WHERE id = ?", (seq, parked.id))
        done.append((parked, seq))
    return done
