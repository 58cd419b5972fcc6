"""The fence: how cutover stops the store's writers without failing them, then makes the store
refuse writes for good.

Holding SQLite's write lock (``BEGIN IMMEDIATE``) makes every other writer *wait* in its busy
timeout rather than fail; readers, the source daemon among them, keep reading (WAL). Releasing it
with ``COMMIT`` after creating the refusal triggers makes the writers that waited, and every later
one, fail with a message that says where the memory went. ``ROLLBACK`` instead releases them to
write on as if nothing happened. If the process holding the fence dies, the OS drops the lock and
SQLite rolls the transaction back: a crash never leaves the store half-fenced.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from replicator.capture.storefile import CaptureError, open_store
from replicator.capture.triggers import NOT_REVERSE_WRITE, head_seq
from replicator.store.schema import TABLES

REFUSAL_PREFIX: Final = "_replicator_moved_"


def refusal_message(target: str, at: str) -> str:
    return f"memory store moved to {target} at {at}; reload caxton.yaml"


def refusal_triggers(message: str) -> list[str]:
    """BEFORE triggers that abort every write to the store's tables with ``message``, except the
    reverse process's (``NOT_REVERSE_WRITE``: docs/reverse.md)."""
    quoted = message.replace("'", "''")
    return [
        f"CREATE TRIGGER IF NOT EXISTS {REFUSAL_PREFIX}{table}_{op} BEFORE {verb} ON {table} WHEN {NOT_REVERSE_WRITE} "
        f"BEGIN SELECT RAISE(ABORT, '{quoted}'); END"
        for table in TABLES
        for op, verb in (("c", "INSERT"), ("u", "UPDATE"), ("d", "DELETE"))
    ]


def refusal_installed(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?", (REFUSAL_PREFIX + "%",)
    ).fetchone()
    return int(row[0]) > 0


@dataclass
class Fence:
    """A held write lock on the store. Not thread-safe; one per cutover."""

    path: Path
    conn: sqlite3.Connection
    acquired_at: float  # time.monotonic()
    final_seq: int
    released_at: float | None = field(default=None)

    @property
    def held_s(self) -> float:
        end = self.released_at if self.released_at is not None else time.monotonic()
        return end - self.acquired_at

    def refuse_writes_and_release(self, message: str) -> None:
        """Create the refusal triggers and COMMIT: the lock is released and every write fails with
        ``message`` from now on. Raises sqlite3.Error (the fence is then rolled back)."""
        try:
            for statement in refusal_triggers(message):
                self.conn.execute(statement)
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            self.release()
            raise
        self.released_at = time.monotonic()
        self.conn.close()

    def release(self) -> None:
        """Roll back (no change to the store) and let the waiting writers through. Idempotent."""
        if self.released_at is not None:
            return
        with contextlib.suppress(sqlite3.Error):  # no transaction: already released
            self.conn.execute("ROLLBACK")
        self.released_at = time.monotonic()
        self.conn.close()


def acquire(path: Path, timeout_s: float) -> Fence:
    """Take the store's write lock, waiting up to ``timeout_s`` for a writer's transaction to end.
    Blocks. Raises CaptureError (not a store, locked past the timeout, read-only)."""
    conn = open_store(path, timeout_s=timeout_s)
    # The refusal's COMMIT must survive a power cut, not only a crash: it is what keeps the runtime
    # off the store once caxton.yaml names the new backend (WAL + NORMAL may lose the last commit).
    conn.execute("PRAGMA synchronous=FULL")
    started = time.monotonic()
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        conn.close()
        raise CaptureError(
            f"could not fence {path}: {exc} after {time.monotonic() - started:.1f}s",
            hint="a long write transaction holds the store; retry the cutover",
        ) from exc
    return Fence(path, conn, time.monotonic(), head_seq(conn))


def remove_refusal(path: Path, timeout_s: float = 5.0) -> bool:
    """Drop the refusal triggers so the store takes writes again (rollback). Returns whether any
    were there. Idempotent. Raises CaptureError."""
    conn = open_store(path, timeout_s=timeout_s)
    try:
        conn.execute("BEGIN IMMEDIATE")
        names = [
            str(r[0])
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?", (REFUSAL_PREFIX + "%",)
            )
        ]
        for name in names:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("COMMIT")
        return bool(names)
    finally:
        conn.close()
