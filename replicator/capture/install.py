"""``replicator source install`` / ``uninstall``: put the changelog and triggers into a store, or take
them out, in one transaction, never half-way. Blocking (sqlite3); idempotent.

Raises CaptureError (a ReplicatorError with a hint) for a path that is missing, not SQLite, lacks the
store's tables, is read-only, or stays locked past ``timeout_s``; the file is then left untouched.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from replicator import __version__
from replicator.capture.triggers import (
    CAPTURE_VERSION,
    CHANGELOG,
    CHANGELOG_DDL,
    META,
    TRIGGER_PREFIX,
    trigger_names,
    trigger_sql,
)
from replicator.errors import ReplicatorError
from replicator.store.schema import TABLES


class CaptureError(ReplicatorError):
    """The store cannot be captured (or released) as asked."""


@dataclass(frozen=True)
class CaptureState:
    """What capture finds installed in a store."""

    installed: bool
    version: int | None
    store_id: str | None
    columns: dict[str, tuple[str, ...]]  # table -> columns the triggers were generated for
    missing_triggers: tuple[str, ...]
    backlog: int  # changelog rows not yet published (and deleted)
    head_seq: int  # highest seq ever assigned (0 when none)


def open_store(path: Path, *, timeout_s: float = 5.0, readonly: bool = False) -> sqlite3.Connection:
    """Open an existing store without ever creating a file. Raises CaptureError with a hint."""
    if not path.exists():
        raise CaptureError(f"no store at {path}", hint="pass the path of Caxton's memory.db (default ./data/memory.db)")
    if path.is_dir():
        raise CaptureError(f"{path} is a directory, not a store file", hint="pass the memory.db file inside it")
    mode = "ro" if readonly else "rw"
    try:
        conn = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=timeout_s, isolation_level=None)
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header: fails for a foreign file
    except sqlite3.DatabaseError as exc:
        raise CaptureError(
            f"{path} is not a SQLite database ({exc})",
            hint="point --db at Caxton's memory store; the file was not modified",
        ) from exc
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def table_columns(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    return tuple(str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})"))


def _check_store(conn: sqlite3.Connection, path: Path) -> None:
    present = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in TABLES if t not in present]
    if missing:
        raise CaptureError(
            f"{path} is SQLite but not a Caxton memory store: no table {', '.join(missing)}",
            hint="point --db at the memory.db that Caxton's runtime writes; the file was not modified",
        )


def _check_writable(path: Path) -> None:
    if not os.access(path, os.W_OK):
        raise CaptureError(f"{path} is read-only", hint="run as the user that owns the store, or fix its permissions")
    if not os.access(path.parent, os.W_OK):
        raise CaptureError(
            f"the directory of {path} is read-only; SQLite needs it for the WAL and journal files",
            hint="run as the user that owns the store's directory",
        )


@contextmanager
def write_transaction(conn: sqlite3.Connection, path: Path, timeout_s: float) -> Iterator[None]:
    """BEGIN IMMEDIATE (waits up to the busy timeout for the writer) ... COMMIT, or ROLLBACK on error."""
    started = time.monotonic()
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise CaptureError(
                f"{path} stayed locked for {time.monotonic() - started:.1f}s (timeout {timeout_s:g}s)",
                hint="a long write transaction holds the store; retry, or raise --lock-timeout",
            ) from exc
        if "readonly" in str(exc):
            raise CaptureError(f"{path} is read-only ({exc})", hint="run as the store's owner") from exc
        raise
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


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
    columns = {t: tuple(meta.get(f"columns.{t}", "").split(",")) if meta.get(f"columns.{t}") else () for t in TABLES}
    has_changelog = (
        conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (CHANGELOG,)).fetchone()
        is not None
    )
    backlog = head = 0
    if has_changelog:
        backlog = int(conn.execute(f"SELECT count(*) FROM {CHANGELOG}").fetchone()[0])
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (CHANGELOG,)).fetchone()
        head = int(row[0]) if row else 0
    return CaptureState(
        installed=has_changelog and "version" in meta,
        version=int(meta["version"]) if "version" in meta else None,
        store_id=meta.get("store_id"),
        columns=columns,
        missing_triggers=tuple(n for n in expected if n not in triggers),
        backlog=backlog,
        head_seq=head,
    )


def install(path: Path, *, timeout_s: float = 5.0) -> CaptureState:
    """Install (or upgrade) capture in one transaction. Idempotent: a second call changes nothing
    unless the triggers are older than this version or the tables gained columns."""
    _check_writable(path) if path.exists() else None
    conn = open_store(path, timeout_s=timeout_s)
    try:
        _check_store(conn, path)
        with write_transaction(conn, path, timeout_s):
            for statement in CHANGELOG_DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)  # not executescript: it would COMMIT our transaction first
            meta = _meta(conn)
            current = {t: table_columns(conn, t) for t in TABLES}
            state = read_state(conn)
            up_to_date = (
                state.version == CAPTURE_VERSION
                and not state.missing_triggers
                and all(state.columns[t] == current[t] for t in TABLES)
            )
            if not up_to_date:
                _drop_triggers(conn)
                for table in TABLES:
                    for statement in trigger_sql(table, current[table]):
                        conn.execute(statement)
                values = {
                    "version": str(CAPTURE_VERSION),
                    "installed_by": __version__,
                    "installed_at_ms": str(time.time_ns() // 1_000_000),
                    **{f"columns.{t}": ",".join(current[t]) for t in TABLES},
                }
                if "store_id" not in meta:
                    values["store_id"] = str(uuid.uuid4())
                conn.executemany(f"INSERT OR REPLACE INTO {META} (key, value) VALUES (?, ?)", values.items())
        return read_state(conn)
    finally:
        conn.close()


def _drop_triggers(conn: sqlite3.Connection) -> None:
    names = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? ESCAPE '\\'",
            (TRIGGER_PREFIX.replace("_", "\\_") + "%",),
        )
    ]
    for name in names:
        conn.execute(f"DROP TRIGGER {name}")


def uninstall(path: Path, *, timeout_s: float = 5.0) -> int:
    """Remove exactly what install made (triggers, changelog, meta). Returns the number of unpublished
    changelog rows that were discarded with it. Idempotent."""
    _check_writable(path) if path.exists() else None
    conn = open_store(path, timeout_s=timeout_s)
    try:
        with write_transaction(conn, path, timeout_s):
            backlog = read_state(conn).backlog
            _drop_triggers(conn)
            conn.execute(f"DROP TABLE IF EXISTS {CHANGELOG}")
            conn.execute(f"DROP TABLE IF EXISTS {META}")
            conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (CHANGELOG,))
        return backlog
    finally:
        conn.close()
