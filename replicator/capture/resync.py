"""Repair helpers for ``validate --repair``: append fresh changelog rows so the pipeline re-sends rows
a destination lost or got wrong. Blocking (sqlite3); each call is one write transaction.

The images are built by ``triggers.image_sql`` -- the SQL the triggers run -- for the columns the
installed triggers were generated for, so a resynced row is indistinguishable from a captured one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from replicator.capture.install import read_state
from replicator.capture.storefile import CaptureError, write_transaction
from replicator.capture.triggers import CHANGELOG, KEY_COLUMN, NOW_MS, image_sql, quote_identifier
from replicator.store.schema import TABLES

_TIMEOUT_S = 5.0


def _path_of(conn: sqlite3.Connection) -> Path:
    row = conn.execute("PRAGMA database_list").fetchone()
    return Path(str(row[2]))


def _columns(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    if table not in TABLES:
        raise CaptureError(f"not a captured table: {table!r}", hint=f"use one of {', '.join(TABLES)}")
    state = read_state(conn)
    if not state.installed:
        raise CaptureError("capture is not installed in this store", hint="run `replicator source install` first")
    return state.columns[table]


def resync(conn: sqlite3.Connection, table: str, ids: Sequence[int]) -> list[int]:
    """Append a ``u`` row (before = after = the row's current image) for each id that exists in
    ``table``; ids with no row are skipped. Returns the new seqs in id order. One write transaction
    (waits for the writer's lock up to the connection's busy timeout). Raises CaptureError."""
    columns = _columns(conn, table)
    key = quote_identifier(KEY_COLUMN[table])
    image = image_sql(table, columns, "r")
    sql = (
        f"INSERT INTO {CHANGELOG} (tbl, op, row_id, ts_ms, before, after) "
        f"SELECT '{table}', 'u', k, {NOW_MS}, img, img FROM "
        f"(SELECT r.{key} AS k, {image} AS img FROM {table} AS r "
        f"WHERE r.{key} IN (SELECT value FROM json_each(?)) ORDER BY r.{key}) RETURNING seq"
    )
    with write_transaction(conn, _path_of(conn), _TIMEOUT_S):
        seqs = [int(row[0]) for row in conn.execute(sql, (json.dumps([int(i) for i in ids]),)).fetchall()]
    return sorted(seqs)


def resync_deleted(
    conn: sqlite3.Connection,
    table: str,
    ids: Sequence[int],
    before_images: Sequence[Mapping[str, Any] | None],
) -> list[int]:
    """Append a ``d`` row for each id that no longer exists in ``table``, with ``before_images[i]``
    (e.g. what the destination still holds, in the changelog image format) as its before image, or
    ``{key: id}`` when None. Returns the new seqs in the order given. One write transaction.
    Raises CaptureError (nothing appended) if the lengths differ or any id still has a row: a
    delete must never be invented for a live row."""
    _columns(conn, table)  # validates the table and that capture is installed
    if len(ids) != len(before_images):
        raise CaptureError(
            f"resync_deleted got {len(ids)} ids but {len(before_images)} before images",
            hint="pass one before image (or None) per id",
        )
    key = KEY_COLUMN[table]
    seqs: list[int] = []
    with write_transaction(conn, _path_of(conn), _TIMEOUT_S):
        live = [
            i
            for i in ids
            if conn.execute(f"SELECT 1 FROM {table} WHERE {quote_identifier(key)} = ?", (int(i),)).fetchone()
        ]
        if live:
            raise CaptureError(
                f"{table} rows {live} still exist; resync_deleted only records deletes of rows that are gone",
                hint="use resync() for live rows; nothing was appended",
            )
        for row_id, before in zip(ids, before_images, strict=True):
            image = {key: int(row_id)} if before is None else {**before, key: int(row_id)}
            cursor = conn.execute(
                f"INSERT INTO {CHANGELOG} (tbl, op, row_id, ts_ms, before, after) "
                f"VALUES (?, 'd', ?, {NOW_MS}, ?, NULL) RETURNING seq",
                (table, int(row_id), json.dumps(image)),
            )
            seqs.append(int(cursor.fetchone()[0]))
    return seqs
