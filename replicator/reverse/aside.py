"""What the store set aside of Neo4j's changelog: ``_replicator_reverse_parked``, its one owner
(written, replaced, retried and read back here; apply.py, status and rollback ask this module).

A change the store's constraints refuse (a name another entity holds, a relation whose endpoint is
missing, a value SQLite cannot hold) is kept with the reason and its image: Neo4j holds it, the
store does not. It stops being missing in one of two ways, both inside apply's transaction:

* **replaced**: a later change of the same row applies. A change carries the row's whole state (or
  its delete), so what was set aside of the row before is no longer owed.
* **retried**: once a batch changed the store, the latest set-aside change of each row is tried
  again from its image, entities before relations, each in seq order. What refused it may be gone
  (the entity holding the name was renamed or deleted; the endpoint arrived). An image whose
  values JSON could not hold exactly (Neo4j temporal or spatial values, kept as their repr for the
  operator) is never retried: it could only write the repr. Cost: about 25 us per set-aside row for
  each batch that changed the store (10,000 rows that still cannot apply: 0.25 s a batch; measured
  with a scratch script against a real store), one read of the table and one savepoint per row.

Image format (JSON): ``{"props": {...}, "from_id", "to_id", "rel_type", "ts_ms", "exact": bool}``.
Rows written before the format had ``props`` (the props and ``from_id``/``to_id`` side by side) are
read back as not exact: listed, never retried.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Final

from replicator.reverse.changelog import Change

PARKED: Final = "_replicator_reverse_parked"
DDL: Final = (
    f"CREATE TABLE IF NOT EXISTS {PARKED} (ns TEXT NOT NULL, seq INTEGER NOT NULL, n INTEGER NOT NULL, "
    "kind TEXT NOT NULL, op TEXT NOT NULL, row_id INTEGER NOT NULL, reason TEXT NOT NULL, image TEXT NOT NULL, "
    "parked_at_ms INTEGER NOT NULL, PRIMARY KEY (ns, seq, n))"
)

#: Applies one change inside a savepoint: None, or why the store refused it (rolled back).
ApplyOne = Callable[[Change], "str | None"]


def park(conn: sqlite3.Connection, ns: str, change: Change, reason: str) -> str:
    """Set ``change`` aside with ``reason`` (inside the caller's transaction). Returns its line."""
    image: dict[str, Any] = {"props": change.props, "from_id": change.from_id, "to_id": change.to_id,
                             "rel_type": change.rel_type, "ts_ms": change.ts_ms, "exact": True}  # fmt: skip
    try:
        text = json.dumps(image)
    except (TypeError, ValueError):  # a value JSON cannot hold exactly: kept readable, never retried
        text = json.dumps({**image, "exact": False}, default=repr)
    conn.execute(
        f"INSERT OR REPLACE INTO {PARKED} (ns, seq, n, kind, op, row_id, reason, image, parked_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (ns, change.seq, change.n, change.kind, change.op, change.id, reason, text, time.time_ns() // 1_000_000),
    )
    return _line(change.seq, change.kind, change.id, reason)


def replace(conn: sqlite3.Connection, ns: str, change: Change) -> None:
    """``change`` applied: what was set aside of its row before it is no longer missing."""
    conn.execute(
        f"DELETE FROM {PARKED} WHERE ns = ? AND kind = ? AND row_id = ? AND seq < ?",
        (ns, change.kind, change.id, change.seq),
    )


def retry(conn: sqlite3.Connection, ns: str, apply_one: ApplyOne) -> list[str]:
    """Try the latest set-aside change of each row again (entities first, then relations, each in seq
    order); what applies is no longer set aside. Returns one line per change that applied. Inside
    the caller's transaction."""
    rows = conn.execute(f"SELECT seq, n, kind, op, row_id, image FROM {PARKED} WHERE ns = ? ORDER BY seq, n", (ns,))
    latest = {(row[2], row[4]): row for row in rows}  # the last change of each row wins
    applied: list[str] = []
    for row in sorted(latest.values(), key=lambda r: (r[2] == "relation", r[0], r[1])):
        seq, kind, row_id = row[0], row[2], row[4]
        change = _change(row)
        if change is None or apply_one(change) is not None:
            continue
        conn.execute(f"DELETE FROM {PARKED} WHERE ns = ? AND kind = ? AND row_id = ? AND seq <= ?",
                     (ns, kind, row_id, seq))  # fmt: skip
        applied.append(_line(seq, kind, row_id))
    return applied


def _change(row: sqlite3.Row | tuple[Any, ...]) -> Change | None:
    """The set-aside change from its row (seq, n, kind, op, row_id, image), None when the image cannot
    give it back exactly."""
    seq, n, kind, op, row_id, text = row
    image = json.loads(text)
    if not isinstance(image, dict) or image.get("exact") is not True or not isinstance(image.get("props"), dict):
        return None
    return Change(int(seq), int(n), int(image["ts_ms"]), str(kind), str(op), int(row_id), image["props"],
                  image.get("from_id"), image.get("to_id"), image.get("rel_type"))  # fmt: skip


def parked_rows(conn: sqlite3.Connection, ns: str) -> list[tuple[int, str, int, str]]:
    """(seq, kind, row id, reason) of every change set aside for ``ns``. Read-only."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (PARKED,)).fetchone()
    if exists is None:
        return []
    rows = conn.execute(f"SELECT seq, kind, row_id, reason FROM {PARKED} WHERE ns = ? ORDER BY seq, n", (ns,))
    return [(int(r[0]), str(r[1]), int(r[2]), str(r[3])) for r in rows]


def set_aside(conn: sqlite3.Connection, ns: str) -> list[str]:
    """One line per change of ``ns`` the store refused and no later change replaced: Neo4j holds it,
    the store does not. Read-only."""
    return [_line(seq, kind, row_id, reason) for seq, kind, row_id, reason in parked_rows(conn, ns)]


def _line(seq: int, kind: str, row_id: int, reason: str = "") -> str:
    """How a set-aside change is named everywhere (the log, status, rollback): seq, kind, id, reason."""
    return f"seq {seq} {kind} {row_id}" + (f": {reason}" if reason else "")
