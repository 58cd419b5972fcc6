"""Opening a store file for capture: refused untouched when it is missing, not SQLite (checked from
the file header before SQLite opens it), lacks the store's tables, or is read-only; a write
transaction that waits for the writer's lock a bounded time. Blocking (sqlite3).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from replicator.errors import Fatal
from replicator.store.schema import TABLES


class CaptureError(Fatal):
    """The store cannot be captured (or released) as asked."""


def sqlite_uri(path: Path, **params: str) -> str:
    """A ``file:`` URI that opens exactly ``path``: SQLite decodes %XX escapes in a URI and ends the
    path at ``?`` or ``#``, so a path containing ``?``, ``#`` or ``%`` must be escaped or it opens
    (and in ``rw`` mode even creates) another file. Pure."""
    query = urllib.parse.urlencode(params)
    return f"file:{urllib.parse.quote(str(path))}" + (f"?{query}" if query else "")


def check_file(path: Path) -> None:
    """Refuse what cannot be a store before SQLite touches it.

    Never open()/close() the file ourselves: closing any descriptor of a file drops every POSIX lock
    this process holds on it, including those of live SQLite connections (the cutover's fence, a
    writer in the same process), which can let another process checkpoint and truncate the WAL under
    them ("disk I/O error"). SQLite tracks its own descriptors; the header is checked through it."""
    if not path.exists():
        raise CaptureError(f"no store at {path}", hint="pass the path of Caxton's memory.db (default ./data/memory.db)")
    if path.is_dir():
        raise CaptureError(f"{path} is a directory, not a store file", hint="pass the memory.db file inside it")
    if path.stat().st_size == 0:
        # SQLite would take an empty file for an empty database and write one there: refuse first.
        raise CaptureError(
            f"{path} is an empty file, not a Caxton memory store: it lacks the store tables ({', '.join(TABLES)})",
            hint="point --db at the memory.db that Caxton's runtime writes; the file was not modified",
        )
    try:
        # immutable=1: no locks taken, no -wal/-shm created; only the header and schema are read.
        probe = sqlite3.connect(sqlite_uri(path, mode="ro", immutable="1"), uri=True, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        raise CaptureError(f"cannot open {path}: {exc}", hint="check the path and its permissions") from exc
    try:
        probe.execute("PRAGMA schema_version").fetchone()  # read-only: reads the header, writes nothing
    except sqlite3.DatabaseError as exc:
        # Only "not a database" (the header: magic, page size) is conclusive. An immutable read sees
        # the main file without its WAL and without locks, so on a live store it can catch the schema
        # half checkpointed and say "malformed" (measured: ~1 open in 400 under a busy writer).
        if "not a database" in str(exc):
            raise CaptureError(
                f"{path} is not a SQLite database ({exc})",
                hint="point --db at Caxton's memory store; the file was not modified",
            ) from exc
        # malformed, locked, busy, ...: the real connection decides (consistently, with its timeout)
    finally:
        probe.close()


def open_store(path: Path, *, timeout_s: float = 5.0, readonly: bool = False) -> sqlite3.Connection:
    """Open an existing store without ever creating or modifying a file (autocommit connection,
    foreign keys on, busy timeout ``timeout_s``). Raises CaptureError with a hint."""
    check_file(path)
    mode = "ro" if readonly else "rw"
    try:
        conn = sqlite3.connect(sqlite_uri(path, mode=mode), uri=True, timeout=timeout_s, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        raise CaptureError(f"cannot open {path}: {exc}", hint="check the path and its permissions") from exc
    try:
        conn.execute("PRAGMA schema_version").fetchone()  # reads the header: fails for a foreign file
        conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise CaptureError(
                f"{path} stayed locked past {timeout_s:g}s", hint="retry, or raise --lock-timeout"
            ) from exc
        raise CaptureError(
            f"{path} is not a usable SQLite database ({exc})",
            hint="point --db at Caxton's memory store; the file was not modified",
        ) from exc
    return conn


def table_columns(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    """The table's columns in declaration order (empty if there is no such table). Read-only."""
    return tuple(str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})"))


def check_store(conn: sqlite3.Connection, path: Path) -> None:
    try:  # the first read of the schema: a corrupt file (with a sound header) fails here
        present = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise CaptureError(
            f"{path} is not a usable SQLite database ({exc})",
            hint="restore the store from a backup (`sqlite3 memory.db .recover` may save its rows); "
            "the file was not modified",
        ) from exc
    missing = [t for t in TABLES if t not in present]
    if missing:
        raise CaptureError(
            f"{path} is SQLite but not a Caxton memory store: it lacks the store tables ({', '.join(missing)})",
            hint="point --db at the memory.db that Caxton's runtime writes; the file was not modified",
        )


def _read_only(target: Path) -> bool:
    # Root passes os.access on a 0444 file; a file nobody may write is still treated as read-only:
    # someone marked it so, and capture does not override that.
    return not os.access(target, os.W_OK) or not (target.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def check_writable(path: Path) -> None:
    if _read_only(path):
        raise CaptureError(
            f"{path} is read-only; capture needs to write its changelog and triggers there",
            hint="run as the user that owns the store, or make it writable (the file was not modified)",
        )
    if _read_only(path.parent):
        raise CaptureError(
            f"the directory of {path} is read-only; SQLite needs it for the WAL and journal files",
            hint="run as the user that owns the store's directory (the file was not modified)",
        )


@contextmanager
def write_transaction(conn: sqlite3.Connection, path: Path, timeout_s: float) -> Iterator[None]:
    """BEGIN IMMEDIATE (waits up to the busy timeout for the writer) ... COMMIT, or ROLLBACK on error.
    Raises CaptureError if the lock is not obtained in time or the store is read-only."""
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
