"""The snapshot's cursor and its chunked read (docs/source.md, "Snapshot and handover"). Blocking
(sqlite3) through the StoreReader, inside the read transaction the daemon opened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replicator.source.convert import State
from replicator.source.metrics import SourceMetrics
from replicator.source.store import StoreReader, state_size
from replicator.store.schema import TABLES


@dataclass
class SnapshotCursor:
    """Where the snapshot is: next table index and the last key published in it."""

    first_seq: int  # W of the first read: the stream starts after it
    read_seq: int | None  # W of the current read transaction (None: none open)
    table_index: int
    after_id: int | None  # the last key published in the table; None: from its first key (ids may be < 0)

    @property
    def done(self) -> bool:
        return self.table_index >= len(TABLES)

    def cursor(self) -> dict[str, Any]:
        return {
            "table": TABLES[self.table_index] if self.table_index < len(TABLES) else None,
            "after": self.after_id,
            "read_seq": self.read_seq,
        }


def read_chunk(
    reader: StoreReader, columns: dict[str, tuple[str, ...]], snap: SnapshotCursor, max_rows: int, max_bytes: int
) -> list[tuple[str, int, str | State]]:
    """The next (table, key, state) rows (the state read by columns, ``StoreReader.snapshot_states``),
    at most ``max_rows`` and no more once they hold ``max_bytes`` (at least one row, so a row of any
    size goes through or is parked); moves ``snap`` past them (to the next table when one is exhausted)."""
    rows: list[tuple[str, int, str | State]] = []
    held = 0
    while len(rows) < max_rows and not snap.done and held < max_bytes:
        table = TABLES[snap.table_index]
        room = max_rows - len(rows)
        got = reader.snapshot_states(table, columns[table], snap.after_id, room + 1, max_bytes - held)
        taken = got[:room]
        held += sum(state_size(state) for _, state in taken)
        rows.extend((table, key, state) for key, state in taken)
        if len(got) > room or held >= max_bytes:  # the table may go on
            snap.after_id = taken[-1][0]
        else:
            snap.table_index += 1
            snap.after_id = None
    return rows


def snapshot_size(reader: StoreReader, snap: SnapshotCursor) -> tuple[int, int]:
    """(rows the snapshot publishes in all, rows before ``snap``'s cursor: those an earlier run of a
    resumed snapshot published), counted in the read transaction the snapshot reads in."""
    counts = reader.count_rows()
    before = sum(counts[table] for table in TABLES[: snap.table_index])
    if snap.after_id is not None and not snap.done:
        before += reader.count_through(TABLES[snap.table_index], snap.after_id)
    return sum(counts.values()), before


class SnapshotMeter:
    """The snapshot's rows done / total, where the source records them: its metrics (``/metrics``,
    read back by ``metrics.snapshot_progress``), and a tqdm bar when ``bar`` (a terminal)."""

    def __init__(self, metrics: SourceMetrics, *, bar: bool) -> None:
        self.metrics, self.show_bar = metrics, bar
        self._bar: Any = None
        self._total = 0

    def opened(self, reader: StoreReader, snap: SnapshotCursor) -> None:
        """The snapshot's read transaction is open: count what it publishes."""
        total, before = snapshot_size(reader, snap)
        self._total = total
        self.metrics.snapshot_expected.set(total)
        self.metrics.snapshot_done.set(before)
        if self.show_bar and self._bar is None:
            from tqdm import tqdm  # type: ignore[import-untyped]  # noqa: PLC0415 - only on a terminal

            self._bar = tqdm(total=total, initial=before, unit="row", desc="snapshot")

    def published(self, rows: int, *, done: bool) -> None:
        self.metrics.snapshot_rows.inc(rows)
        self.metrics.snapshot_done.inc(rows)
        if self._bar is not None:
            self._bar.update(rows)
        if done:  # every row of the read is out, whatever an earlier run's count was
            self.metrics.snapshot_done.set(self._total)
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
