"""A changelog page -> the events it publishes: one per row and run of changes, the state read while
publishing (docs/capture.md, "What a changelog row holds"). Pure.

Since CAPTURE_VERSION 5 a trigger records only (table, op, key): the source reads each row's state in
the read transaction of the page. Several changes of one row in a page then carry the same state, so
they are *coalesced* into one event at the highest seq of the run (sinks keep the newest seq per key,
and every event carries the whole row). A run ends at:

* a ``d``: the event is that delete (its ``before`` is what the trigger recorded: NULL, or the old
  image of a relation), so a sink never misses a delete that is followed by a re-insert;
* a ``u`` with a ``before`` (a relation whose endpoints moved): its own event, so each old pair of
  endpoints reaches the graph sink, which finds the relationship there;
* a row with an ``after`` image (written by an older version, by ``resync`` or ``retry-parked``):
  published as it is, never merged.

A run of key-only ``c``/``u`` is published as ``c`` when it began with the insert, else ``u``, with
``after`` = the state read. A row gone by the read (deleted later, beyond the page) publishes nothing:
its delete is still in the changelog, after the page, and follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from replicator.source.convert import ChangelogRow, State


@dataclass(frozen=True)
class Unit:
    """One event to publish: ``row`` (seq, op, ts_ms, before of the run's last change), the other
    seqs it covers (all lower), and whether its ``after`` is still to be read from the row."""

    row: ChangelogRow
    covers: tuple[int, ...] = ()
    needs_state: bool = False


def units(rows: Sequence[ChangelogRow]) -> list[Unit]:
    """Group ``rows`` (seq order) into the units they publish, in the order of their seqs."""
    open_runs: dict[tuple[str, int], list[ChangelogRow]] = {}
    out: list[Unit] = []

    def close(key: tuple[str, int]) -> None:
        run = open_runs.pop(key, None)
        if run:
            out.append(_unit(run))

    for row in rows:
        key = (row.table, row.row_id)
        if row.after is not None:
            close(key)
            out.append(Unit(row))
            continue
        open_runs.setdefault(key, []).append(row)
        if row.op == "d" or row.before is not None:
            close(key)
    for key in list(open_runs):
        close(key)
    return sorted(out, key=lambda u: u.row.seq)


def _unit(run: list[ChangelogRow]) -> Unit:
    last = run[-1]
    covers = tuple(r.seq for r in run[:-1])
    if last.op == "d":
        return Unit(last, covers)
    op = "c" if run[0].op == "c" else "u"
    return Unit(ChangelogRow(last.seq, last.table, op, last.row_id, last.ts_ms, last.before, None), covers, True)


def with_state(row: ChangelogRow, after: str | State | None) -> ChangelogRow:
    """``row`` with its state read (the row's image; None when it is gone, see ``is_gone``)."""
    return ChangelogRow(row.seq, row.table, row.op, row.row_id, row.ts_ms, row.before, after)


def is_gone(row: ChangelogRow) -> bool:
    """A key-only change whose row no longer existed when the page was read: it publishes nothing
    (its delete follows in the changelog)."""
    return row.op in ("c", "u") and row.after is None
