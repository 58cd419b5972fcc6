"""The source's access to the store: reads that never block the writer (WAL readers), and the one
write it makes, deleting published changelog rows, with a short busy timeout so that a held write
lock (the writer, the cutover fence) only postpones it.

Blocking (sqlite3). Raises SourceError (with a hint) for a store that is not installed or drifted.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from replicator.capture import parked
from replicator.capture.image import sqlite_type
from replicator.capture.install import read_state
from replicator.capture.storefile import CaptureError, open_store, table_columns
from replicator.capture.triggers import (
    CAPTURE_VERSION,
    CHANGELOG,
    KEY_COLUMN,
    KNOWN_COLUMNS,
    MARK,
    changelog_rows,
    delete_published,
    head_seq,
    image_sql,
    quote_identifier,
)
from replicator.errors import Fatal
from replicator.source import coalesce
from replicator.source.convert import ChangelogRow, State
from replicator.store.schema import TABLES, count_rows

_INSTALL_HINT: Final = "run `replicator source install --db PATH` (it regenerates the triggers), then start again"


def lenient_text(data: bytes) -> str:
    """SQLite TEXT as str, never raising: a writer may store bytes that are not UTF-8 as TEXT, and the
    triggers copy them into the images. They come out as lone surrogates (``surrogateescape``), which
    the converter names and parks instead of crashing on the row at every restart."""
    return data.decode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=32)
def _columns_sql(table: str, columns: tuple[str, ...], where: str = "= ?") -> str:
    """The SELECT of rows' columns by key (``where``: the key's condition, and any ORDER/LIMIT), with
    the fields looked up from their entities (relation endpoint names; the embedding's entity name,
    type and observations) in ``image_sql``'s order."""
    cols = ", ".join(f"t.{quote_identifier(c)}" for c in columns)
    key = f"t.{KEY_COLUMN[table]}"
    if table == "relations":
        return (f"SELECT {cols}, f.name, o.name FROM relations AS t LEFT JOIN entities AS f ON f.id = "
                f"t.from_entity_id LEFT JOIN entities AS o ON o.id = t.to_entity_id WHERE {key} {where}")  # fmt: skip
    if table == "embeddings":
        return (f"SELECT {cols}, e.name, e.entity_type, e.observations FROM embeddings AS t "
                f"LEFT JOIN entities AS e ON e.id = t.entity_id WHERE {key} {where}")  # fmt: skip
    return f"SELECT {cols} FROM {table} AS t WHERE {key} {where}"


_LOOKED_UP: Final = {
    "entities": (),
    "relations": ("from_entity_name", "to_entity_name"),
    "embeddings": ("text_name", "text_type", "text_observations"),
}


def state_size(state: str | State | None) -> int:
    """About how many bytes a state holds (the bound on what one read keeps in memory)."""
    if state is None or isinstance(state, str):
        return len(state or "")
    total = 8 * len(state)
    for value in state.values():
        if value.__class__ is str or value.__class__ is bytes:
            total += len(value)
    return total


def _state_of(table: str, columns: tuple[str, ...], found: tuple[object, ...]) -> State:
    """A row read by ``_columns_sql`` as its state: column -> value, plus the looked-up fields."""
    state: State = dict(zip((*columns, *_LOOKED_UP[table]), found, strict=True))
    if table == "embeddings" and state["embedding"].__class__ is not bytes:
        state["embedding"] = [sqlite_type(state["embedding"]), state["embedding"]]  # as the image has it
    return state


@functools.lru_cache(maxsize=16)
def _state_sql(table: str, columns: tuple[str, ...]) -> str:
    """The SELECT of one row's image by key (generated once: building it costs more than running it)."""
    return f"SELECT {image_sql(table, columns, 't')} FROM {table} AS t WHERE t.{KEY_COLUMN[table]} = ?"


class SourceError(Fatal):
    """The source cannot go on: the store is not captured, has drifted, or the stream is inconsistent."""


@dataclass(frozen=True)
class StoreIdentity:
    store_id: str
    columns: dict[str, tuple[str, ...]]  # what the triggers were generated for
    #: The seq this installation started at (0: unknown, an older install). A committed position
    #: below it predates a capture gap: what changed in the gap is in no changelog row.
    capture_from: int = 0


@dataclass(frozen=True)
class Page:
    """One read of the changelog: the rows to convert (coalesced, state filled in, seq order) and
    whether it reached the end of what waited (fewer rows than asked, byte budget not reached)."""

    rows: list[ChangelogRow]
    complete: bool
    held: int  # bytes of images the page holds


class StoreReader:
    """A read connection (WAL reader: never blocks the writer) plus a separate connection for the
    short-timeout deletes. Not thread-safe: one daemon loop owns it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = open_store(path, timeout_s=5.0)
        self.conn.text_factory = lenient_text
        self._writer: sqlite3.Connection | None = None
        self._schema_version = -1
        self._data_version = -1
        self._columns: dict[str, tuple[str, ...]] = {}

    def close(self) -> None:
        self.conn.close()
        if self._writer is not None:
            self._writer.close()

    # -- installation and drift -------------------------------------------------------------
    def check(self) -> StoreIdentity:
        """Capture is installed, complete and generated for the tables' current columns. Raises SourceError."""
        state = read_state(self.conn)
        if not state.installed or state.store_id is None:
            raise SourceError(f"capture is not installed in {self.path}", hint=_INSTALL_HINT)
        if state.version is not None and state.version < CAPTURE_VERSION:
            # An older changelog keeps its high mark elsewhere (v5: sqlite_sequence); install upgrades
            # it in place, keeping every unpublished row.
            raise SourceError(
                f"capture in {self.path} is version {state.version}; this source needs version {CAPTURE_VERSION}",
                hint=_INSTALL_HINT + " (the upgrade keeps the changelog: nothing is lost)",
            )
        if state.missing_triggers:
            raise SourceError(
                f"capture triggers are missing from {self.path}: {', '.join(state.missing_triggers)}; "
                "changes made meanwhile were not captured",
                hint=_INSTALL_HINT + "; then re-snapshot (a new topic prefix) if writes happened meanwhile",
            )
        for table in TABLES:
            current = table_columns(self.conn, table)
            captured = state.columns[table]
            added = [c for c in current if c not in captured]
            if added:
                raise SourceError(
                    f"the writer added column(s) {', '.join(added)} to {table}; the triggers do not carry them "
                    "yet, and the source stops rather than drop their data",
                    hint=_INSTALL_HINT,
                )
            removed = [c for c in captured if c not in current]
            if removed:
                raise SourceError(
                    f"column(s) {', '.join(removed)} of {table} were dropped by the writer",
                    hint=_INSTALL_HINT,
                )
        self._schema_version = self.schema_version()
        self._columns = dict(state.columns)
        return StoreIdentity(state.store_id, dict(state.columns), state.capture_from)

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA schema_version").fetchone()[0])

    def check_drift(self) -> None:
        """Cheap per poll: re-check only when ``PRAGMA schema_version`` moved. Raises SourceError."""
        if self.schema_version() != self._schema_version:
            self.check()

    def changed(self) -> bool:
        """True when another connection committed since the last call (``PRAGMA data_version``)."""
        version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
        changed = version != self._data_version
        self._data_version = version
        return changed

    # -- reads --------------------------------------------------------------------------------
    def head_seq(self) -> int:
        return head_seq(self.conn)

    def backlog(self, after: int) -> int:
        return changelog_rows(self.conn, after)

    def changelog_after(self, after: int, limit: int, max_bytes: int | None = None) -> list[ChangelogRow]:
        """The rows ``page_after`` publishes (see there)."""
        return self.page_after(after, limit, max_bytes).rows

    def page_after(self, after: int, limit: int, max_bytes: int | None = None) -> Page:
        """Up to ``limit`` changelog rows with seq > ``after`` and the state of the rows they name, read
        in ONE read transaction (the state is as of that read), coalesced (``source/coalesce.py``):
        the rows to publish, in seq order. Stops once the images hold ``max_bytes`` (at least one row):
        memory stays bounded when rows are large. Needs ``check`` first (the columns to image)."""
        self.conn.execute("BEGIN")
        try:
            raw, held = self._changelog(after, limit, max_bytes)
            found = coalesce.units(raw)
            rows: list[ChangelogRow] = []
            for unit in found:
                if max_bytes is not None and rows and held >= max_bytes:
                    break
                if unit.needs_state:
                    row = coalesce.with_state(unit.row, self._state(unit))
                    held += state_size(row.after)
                else:
                    row = unit.row
                rows.append(row)
        finally:
            self.conn.execute("COMMIT")
        complete = len(raw) < limit and len(rows) == len(found) and (max_bytes is None or held < max_bytes)
        return Page(rows, complete, held)

    def _changelog(self, after: int, limit: int, max_bytes: int | None) -> tuple[list[ChangelogRow], int]:
        cursor = self.conn.execute(
            f"SELECT seq, tbl, op, row_id, ts_ms, before, after FROM {CHANGELOG} WHERE seq > ? AND op <> '{MARK}' "
            "ORDER BY seq LIMIT ?",
            (after, limit),
        )
        rows: list[ChangelogRow] = []
        held = 0
        try:
            for r in cursor:
                rows.append(ChangelogRow(int(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), r[5], r[6]))
                held += len(r[5] or "") + len(r[6] or "")
                if max_bytes is not None and held >= max_bytes:
                    break
        finally:
            cursor.close()
        return rows, held

    def _state(self, unit: coalesce.Unit) -> str | State | None:
        """``unit``'s row as it is now (None when gone): its values read by columns, each exactly as
        SQLite holds it (no image to build and parse), or, for a table with columns capture does not
        know (drift), its image built by the triggers' SQL."""
        table, columns = unit.row.table, self.columns(unit.row.table)
        if set(columns) != set(KNOWN_COLUMNS[table]):
            return self.image_of(table, unit.row.row_id)
        found = self.conn.execute(_columns_sql(table, columns), (unit.row.row_id,)).fetchone()
        return None if found is None else _state_of(table, columns, found)

    def columns(self, table: str) -> tuple[str, ...]:
        """The columns the installed triggers were generated for (read once)."""
        if not self._columns:  # read without check()
            self._columns = dict(read_state(self.conn).columns)
        return self._columns[table]

    def image_of(self, table: str, row_id: int) -> str | None:
        """The row's image as it is now (the triggers' SQL), None when it is gone."""
        found = self.conn.execute(_state_sql(table, self.columns(table)), (row_id,)).fetchone()
        return None if found is None else str(found[0])

    def min_seq(self) -> int | None:
        row = self.conn.execute(f"SELECT min(seq) FROM {CHANGELOG} WHERE op <> '{MARK}'").fetchone()
        return None if row[0] is None else int(row[0])

    # -- the consistent snapshot read -----------------------------------------------------------
    def begin_snapshot(self) -> int:
        """BEGIN a read transaction and return the changelog head W it sees. Every read until
        ``end_snapshot`` sees the store exactly at W (WAL snapshot isolation; the writer goes on)."""
        self.conn.execute("BEGIN")
        return self.head_seq()  # the first read fixes the transaction's snapshot

    def end_snapshot(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def count_rows(self) -> dict[str, int]:
        return count_rows(self.conn)

    def count_through(self, table: str, key: int) -> int:
        """Rows of ``table`` whose key is at most ``key`` (what a resumed snapshot already published)."""
        sql = f"SELECT count(*) FROM {table} WHERE {KEY_COLUMN[table]} <= ?"
        return int(self.conn.execute(sql, (key,)).fetchone()[0])

    def snapshot_chunk(
        self, table: str, columns: tuple[str, ...], after_id: int | None, limit: int, max_bytes: int | None = None
    ) -> list[tuple[int, str]]:
        """(key, image JSON) of up to ``limit`` rows of ``table`` with key > ``after_id`` (None: from the
        first key; a rowid may be negative, down to -2**63), in key order, and no more once the images
        hold ``max_bytes`` (at least one row)."""
        key = KEY_COLUMN[table]
        where = "" if after_id is None else f"WHERE t.{key} > ?"
        sql = f"SELECT t.{key}, {image_sql(table, columns, 't')} FROM {table} AS t {where} ORDER BY t.{key} LIMIT ?"
        cursor = self.conn.execute(sql, (limit,) if after_id is None else (after_id, limit))
        rows: list[tuple[int, str]] = []
        held = 0
        try:
            for r in cursor:
                rows.append((int(r[0]), str(r[1])))
                held += len(r[1])
                if max_bytes is not None and held >= max_bytes:
                    break
        finally:
            cursor.close()
        return rows

    def snapshot_states(
        self, table: str, columns: tuple[str, ...], after_id: int | None, limit: int, max_bytes: int | None = None
    ) -> list[tuple[int, str | State]]:
        """As ``snapshot_chunk``, each row's state read by columns (as the stream reads it: no image to
        build in SQL and parse back), or its image for a table with columns capture does not know."""
        if set(columns) != set(KNOWN_COLUMNS[table]):
            return list(self.snapshot_chunk(table, columns, after_id, limit, max_bytes))
        key = KEY_COLUMN[table]
        where = "IS NOT NULL" if after_id is None else "> ?"  # a rowid may be negative, down to -2**63
        sql = _columns_sql(table, columns, f"{where} ORDER BY t.{key} LIMIT ?")
        cursor = self.conn.execute(sql, (limit,) if after_id is None else (after_id, limit))
        rows: list[tuple[int, str | State]] = []
        held = 0
        try:
            for found in cursor:
                state = _state_of(table, columns, found)
                rows.append((int(state[key]), state))
                held += state_size(state)
                if max_bytes is not None and held >= max_bytes:
                    break
        finally:
            cursor.close()
        return rows

    def parked_count(self) -> int:
        return parked.count_parked(self.conn)

    # -- the writes: deleting published rows, parking rows ------------------------------------------
    def _write(self, busy_timeout_ms: int, work: Callable[[sqlite3.Connection], object]) -> bool:
        """Run ``work`` in one write transaction, waiting at most ``busy_timeout_ms`` for the write lock.
        Returns False (nothing written, retry later) when the lock stays held. Never raises for a busy store."""
        if self._writer is None:
            try:
                self._writer = open_store(self.path, timeout_s=busy_timeout_ms / 1000)
            except CaptureError:
                return False
        conn = self._writer
        try:
            conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return False
            raise
        try:
            work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return True

    def delete_published(self, up_to: int, busy_timeout_ms: int) -> bool:
        """Delete changelog rows with seq <= ``up_to`` (already committed to Kafka; the highest row stays
        as a mark, ``triggers.delete_published``). Waits at most
        ``busy_timeout_ms`` for the write lock; returns False (nothing deleted, retry later) when it is
        held. Never raises for a busy store."""
        return self._write(busy_timeout_ms, lambda c: delete_published(c, up_to))

    def park_change(self, seq: int, why: parked.Why, busy_timeout_ms: int, table: str | None = None) -> bool:
        """Park changelog row ``seq`` (capture/parked.py) before the transaction that passes it commits;
        ``table``: the row's table, whose current image the parked row keeps when the changelog row
        holds none. Returns False when the write lock stayed held (publish what precedes it; try again
        next poll)."""
        state = None if table is None else (table, self.columns(table))
        return self._write(busy_timeout_ms, lambda c: parked.park_change(c, seq, why, state))

    def park_snapshot_row(
        self, table: str, columns: tuple[str, ...], row_id: int, *, read_seq: int, why: parked.Why, busy_timeout_ms: int
    ) -> bool:
        """Park a row the snapshot read (op ``r`` at ``read_seq``). False when the lock stayed held."""
        return self._write(
            busy_timeout_ms, lambda c: parked.park_snapshot_row(c, table, columns, row_id, read_seq=read_seq, why=why)
        )

    def unpark_uncommitted(self, committed_seq: int, busy_timeout_ms: int) -> bool:
        """Forget changes parked after the committed position (decided again). False when busy."""
        return self._write(busy_timeout_ms, lambda c: parked.unpark_uncommitted(c, committed_seq))
