"""``replicator source install`` / ``uninstall``: put the changelog and triggers into a store, or take
them out, in one transaction, never half-way. Blocking (sqlite3); idempotent.

Raises CaptureError (a ReplicatorError with a hint) for a path that is missing, not SQLite (checked
from the file header before SQLite opens it), lacks the store's tables (an empty file included),
is read-only, holds an object named like ours that capture did not make, or stays locked past
``timeout_s``; the file is then left byte-for-byte untouched and no -wal/-shm/-journal is left
behind. Any error while installing rolls the whole transaction back.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

from replicator import __version__
from replicator.capture.parked import PARKED, PARKED_DDL, count_parked
from replicator.capture.storefile import (
    CaptureError,
    check_file,
    check_store,
    check_writable,
    open_store,
    table_columns,
    write_transaction,
)
from replicator.capture.triggers import (
    CAPTURE_VERSION,
    CHANGELOG,
    CHANGELOG_DDL,
    CHANGELOG_TABLE_DDL,
    META,
    TRIGGER_PREFIX,
    changelog_rows,
    head_seq,
    place_mark,
    trigger_names,
    trigger_sql,
)
from replicator.store.schema import TABLES

#: Meta keys beside version/store_id/columns: the seq an installation started at, and the head an
#: uninstall kept so that the next install continues after it (a store's seq never goes backwards).
_CAPTURE_FROM: Final = "capture_from"
_KEPT_HEAD: Final = "head_seq"
#: What an uninstall keeps of the meta table: the store's identity and how far its seq went.
_IDENTITY_KEYS: Final = ("store_id", _KEPT_HEAD, "uninstalled_at_ms")


@dataclass(frozen=True)
class CaptureState:
    """What capture finds installed in a store."""

    installed: bool
    version: int | None
    store_id: str | None
    columns: dict[str, tuple[str, ...]]  # table -> columns the triggers were generated for
    missing_triggers: tuple[str, ...]
    backlog: int  # changelog rows not yet published (and deleted)
    head_seq: int  # highest seq ever assigned (0 when none); kept across uninstall and install
    #: The seq this installation started at: rows captured since carry higher seqs, and its first
    #: snapshot is stamped with it or later. A source position older than it predates a capture gap
    #: (uninstall ... install) and is re-snapshotted. 0: installed by a version that did not record it.
    capture_from: int = 0


class Drift(NamedTuple):
    """A table whose columns differ from those the triggers were generated for."""

    table: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    present = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (META,)).fetchone()
    if present is None:
        return {}
    return {str(k): str(v) for k, v in conn.execute(f"SELECT key, value FROM {META}")}


def read_state(conn: sqlite3.Connection) -> CaptureState:
    """What is installed. Read-only."""
    meta = _meta(conn)
    triggers = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    expected = [name for table in TABLES for name in trigger_names(table)]
    columns = {t: tuple(meta[f"columns.{t}"].split(",")) if meta.get(f"columns.{t}") else () for t in TABLES}
    has_changelog = (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (CHANGELOG,)).fetchone()
        is not None
    )
    backlog = head = 0
    if has_changelog:
        backlog, head = changelog_rows(conn), head_seq(conn)
    head = max(head, int(meta.get(_KEPT_HEAD, 0)))
    return CaptureState(
        installed=has_changelog and "version" in meta,
        version=int(meta["version"]) if "version" in meta else None,
        store_id=meta.get("store_id"),
        columns=columns,
        missing_triggers=tuple(n for n in expected if n not in triggers),
        backlog=backlog,
        head_seq=head,
        capture_from=int(meta.get(_CAPTURE_FROM, 0)),
    )


def detect_drift(conn: sqlite3.Connection, state: CaptureState) -> list[Drift]:
    """Tables whose current columns differ from those the installed triggers were generated for
    (added or removed columns; a reorder alone is not drift). Empty when capture is not installed.
    Read-only. A table with drift is captured with its old column list until ``install`` runs."""
    if not state.installed:
        return []
    drifts: list[Drift] = []
    for table in TABLES:
        current, captured = table_columns(conn, table), state.columns[table]
        added = tuple(c for c in current if c not in captured)
        removed = tuple(c for c in captured if c not in current)
        if added or removed:
            drifts.append(Drift(table, added, removed))
    return drifts


def _kept_identity(conn: sqlite3.Connection) -> dict[str, str] | None:
    """The identity an earlier uninstall kept (``_replicator_meta`` holding a store id and no version),
    or None. A meta table of any other shape is not ours to take over."""
    meta = _meta(conn)
    if "store_id" in meta and "version" not in meta and set(meta) <= set(_IDENTITY_KEYS):
        return meta
    return None


def _refuse_foreign_objects(conn: sqlite3.Connection, path: Path, *, kept_meta: bool) -> None:
    """Before a first install: an object already named like ours was not made by capture; taking it
    over (or dropping it on uninstall) would damage someone else's schema. ``kept_meta``: the meta
    table is the identity an uninstall kept (ours)."""
    ours = {CHANGELOG, META, PARKED, *(name for table in TABLES for name in trigger_names(table))}
    rows = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
    clashes = [
        f"{kind} {name}"
        for kind, name in rows
        if (name in ours or str(name).startswith(TRIGGER_PREFIX)) and not (kept_meta and name == META)
    ]
    if clashes:
        raise CaptureError(
            f"{path} already holds {', '.join(clashes)}, which capture did not install (no {META} version)",
            hint="rename or drop those objects, or check that --db names the right store; nothing was changed",
        )


def install(path: Path, *, timeout_s: float = 5.0) -> CaptureState:
    """Install (or upgrade) capture in one transaction. Idempotent: a second call changes nothing
    unless the triggers are older than this version, some are missing, or the tables' columns
    changed (then the triggers are regenerated for the current columns; the changelog is kept).
    The writer's tables are never altered. Raises CaptureError; on any error nothing is changed."""
    check_file(path)
    check_writable(path)
    conn = open_store(path, timeout_s=timeout_s)
    try:
        check_store(conn, path)
        with write_transaction(conn, path, timeout_s):
            try:
                _install_locked(conn, path)
            except sqlite3.Error as exc:
                raise CaptureError(
                    f"installing capture into {path} failed and was rolled back: {exc}",
                    hint="nothing was changed; fix the cause named above and run install again",
                ) from exc
        return read_state(conn)
    finally:
        conn.close()


def _install_locked(conn: sqlite3.Connection, path: Path) -> None:
    state = read_state(conn)
    first: dict[str, str] = {}
    if not state.installed:
        kept = _kept_identity(conn)
        _refuse_foreign_objects(conn, path, kept_meta=kept is not None)
        for statement in CHANGELOG_DDL.split(";"):
            if statement.strip() and not (kept is not None and META in statement):
                conn.execute(statement)  # not executescript: it would COMMIT our transaction first
        conn.execute(PARKED_DDL)
        # The seq this installation starts at is reserved for its snapshot: a snapshot is stamped with
        # the head seq of its read, and a fresh store's head would otherwise be 0, a value sinks may
        # read as "none yet". After an uninstall it continues past the kept head, so every seq this
        # installation assigns is newer than any the destinations hold (docs/capture.md).
        start = max(1, head_seq(conn), int(kept.get(_KEPT_HEAD, 0)) + 1 if kept is not None else 0)
        conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (CHANGELOG,))
        place_mark(conn, start)
        if kept is not None:
            conn.execute(f"DELETE FROM {META} WHERE key IN (?, ?)", (_KEPT_HEAD, "uninstalled_at_ms"))
        first[_CAPTURE_FROM] = str(start)
        state = read_state(conn)
    elif _has_autoincrement(conn):
        _rebuild_changelog(conn)
        state = read_state(conn)  # its triggers are gone: created again below
    current = {t: table_columns(conn, t) for t in TABLES}
    up_to_date = (
        state.version == CAPTURE_VERSION
        and not state.missing_triggers
        and all(state.columns[t] == current[t] for t in TABLES)
    )
    if up_to_date:
        return
    _drop_triggers(conn)
    for table in TABLES:
        for statement in trigger_sql(table, current[table]):
            conn.execute(statement)
    values = {
        **first,
        "version": str(CAPTURE_VERSION),
        "installed_by": __version__,
        "installed_at_ms": str(time.time_ns() // 1_000_000),
        **{f"columns.{t}": ",".join(current[t]) for t in TABLES},
    }
    if state.store_id is None:
        values["store_id"] = str(uuid.uuid4())
    conn.executemany(f"INSERT OR REPLACE INTO {META} (key, value) VALUES (?, ?)", values.items())


def _has_autoincrement(conn: sqlite3.Connection) -> bool:
    """The changelog is of CAPTURE_VERSION 5 or older: AUTOINCREMENT, its high mark in sqlite_sequence."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (CHANGELOG,)).fetchone()
    return row is not None and "AUTOINCREMENT" in str(row[0]).upper()


def _rebuild_changelog(conn: sqlite3.Connection) -> None:
    """Upgrade an older changelog to this version's table in install's transaction: its rows keep
    their seqs (unpublished changes are published as they are), and the high mark AUTOINCREMENT kept in
    sqlite_sequence, when above every row (published rows deleted), becomes a mark row, so no seq
    assigned before is assigned again. Copied through a temp table rather than renamed: ALTER TABLE
    RENAME re-checks the writer's whole schema and would fail the install for a fault not ours."""
    high = head_seq(conn)
    _drop_triggers(conn)  # they name the changelog; install creates them again right after
    copy = "temp._replicator_changelog_upgrade"
    conn.execute(f"DROP TABLE IF EXISTS {copy}")
    conn.execute(f"CREATE TABLE {copy} AS SELECT seq, tbl, op, row_id, ts_ms, before, after FROM {CHANGELOG}")
    conn.execute(f"DROP TABLE {CHANGELOG}")
    conn.execute(CHANGELOG_TABLE_DDL)
    conn.execute(f"INSERT INTO {CHANGELOG} SELECT * FROM {copy} ORDER BY seq")
    conn.execute(f"DROP TABLE {copy}")
    conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (CHANGELOG,))
    if head_seq(conn) < high:
        place_mark(conn, high)


def _drop_triggers(conn: sqlite3.Connection) -> None:
    """Drop every trigger with our prefix: install refuses a store holding such a trigger it did not
    make, so each of them is ours (possibly from an older CAPTURE_VERSION with other names)."""
    names = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? ESCAPE '\\'",
            (TRIGGER_PREFIX.replace("_", "\\_") + "%",),
        )
    ]
    for name in names:
        conn.execute(f'DROP TRIGGER "{name}"')


def uninstall(path: Path, *, timeout_s: float = 5.0, forget: bool = False) -> int:
    """Remove the triggers, the changelog and the parked rows. The meta table stays with only the
    store's identity: ``store_id`` and ``head_seq`` (the highest seq ever assigned), so that a later
    ``install`` continues the same store's seq after it and the source re-snapshots what changed
    meanwhile. ``forget``: remove the meta table too (sqlite_master as before the first install); a
    later install is then a new store, whose destinations must be new too. Returns the number of
    unpublished changes (changelog rows and parked rows not yet retried) discarded. Idempotent: a
    store without capture (or with only a kept identity, unless ``forget``) is left as is. Raises
    CaptureError (file untouched) as install does."""
    check_file(path)
    check_writable(path)
    conn = open_store(path, timeout_s=timeout_s)
    try:
        state = read_state(conn)
        if not state.installed:
            if forget and _kept_identity(conn) is not None:
                with write_transaction(conn, path, timeout_s):
                    conn.execute(f"DROP TABLE {META}")
            return 0  # nothing of ours (objects named like ours without our meta are someone else's)
        with write_transaction(conn, path, timeout_s):
            state = read_state(conn)
            backlog = state.backlog + count_parked(conn)
            _drop_triggers(conn)
            conn.execute(f"DROP TABLE IF EXISTS {PARKED}")
            conn.execute(f"DROP TABLE IF EXISTS {CHANGELOG}")
            conn.execute("DELETE FROM sqlite_sequence WHERE name IN (?, ?)", (CHANGELOG, PARKED))
            if forget:
                conn.execute(f"DROP TABLE IF EXISTS {META}")
            else:
                kept = {"store_id": str(state.store_id), _KEPT_HEAD: str(state.head_seq),
                        "uninstalled_at_ms": str(time.time_ns() // 1_000_000)}  # fmt: skip
                conn.execute(f"DELETE FROM {META}")
                conn.executemany(f"INSERT INTO {META} (key, value) VALUES (?, ?)", kept.items())
        return backlog
    finally:
        conn.close()
