"""Where capture's cost to the writer is: the writer_overhead workload under variants of the trigger
and of the changelog table, CPU time per row against the plain writer, in one run.

Each variant is a store with capture installed and then changed: ``when0`` a trigger whose body never
runs (the cost of a trigger existing), ``key2`` a key-only insert into a two-column rowid table,
``key2_autoincrement`` the same with AUTOINCREMENT, ``changelog_no_check`` / ``changelog_in_check`` /
``changelog_cmp_check`` a key-only insert into the changelog's columns without a CHECK, with
``op IN ('c', 'u', 'd')`` (v5's) and with comparisons (v6's), ``captured`` the installed triggers,
``captured_v6`` v6's triggers (a lookup of the reverse process's meta row in each, the update's
"changed nothing" WHEN in column order), ``captured_no_when`` / ``captured_no_ts`` the installed ones
without the update's "changed nothing" WHEN / with ts_ms 0.
Figures and what was concluded: docs/capture.md, "Writer overhead".

Usage: PYTHONPATH=. .venv/bin/python bench/capture_variants.py [--rows 2000] [--reps 5] [--only a,b]
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.writer_overhead import OPS, _run, _store
from replicator.capture.triggers import KEY_COLUMN, NOW_MS, trigger_names, trigger_sql
from replicator.store.schema import TABLES
from replicator.testing.legacy_capture import v6_trigger_sql

Change = Callable[[sqlite3.Connection], None]
_EVENTS = (("INSERT", "c", "NEW"), ("UPDATE", "u", "NEW"), ("DELETE", "d", "OLD"))
_COLUMNS = "tbl TEXT{nn}, op TEXT{nn}{check}, row_id INTEGER{nn}, ts_ms INTEGER{nn}, before TEXT, after TEXT"


def _triggers(body: str, when: str = "") -> Change:
    """Replace capture's triggers by ones running ``body`` (formatted with table, op, ref, key)."""

    def change(conn: sqlite3.Connection) -> None:
        for table, key in KEY_COLUMN.items():
            for name, (event, op, ref) in zip(trigger_names(table), _EVENTS, strict=True):
                conn.execute(f'DROP TRIGGER "{name}"')
                sql = body.format(table=table, op=op, ref=ref, key=key)
                conn.execute(f'CREATE TRIGGER "{name}" AFTER {event} ON {table} {when} BEGIN {sql}; END')

    return change


def _table(ddl: str) -> Change:
    return lambda conn: conn.execute(ddl).close()


def _installed(edit: Callable[[str], str], generate: Callable[[str, list[str]], list[str]] = trigger_sql) -> Change:
    """Capture's own triggers (or those ``generate`` makes), their SQL edited."""

    def change(conn: sqlite3.Connection) -> None:
        for table in TABLES:
            columns = [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]
            for name, sql in zip(trigger_names(table), generate(table, columns), strict=True):
                conn.execute(f'DROP TRIGGER "{name}"')
                conn.execute(edit(sql))

    return change


_KEY_ONLY = "INSERT INTO t (tbl, op, row_id, ts_ms) VALUES ('{table}', '{op}', {ref}.{key}, 0)"
_IN_CHECK = " CHECK (op IN ('c', 'u', 'd'))"
_CMP_CHECK = " CHECK (op = 'c' OR op = 'u' OR op = 'd' OR op = 'm')"
VARIANTS: dict[str, list[Change]] = {
    "when0": [_triggers("SELECT 1", "WHEN 0")],
    "key2": [
        _table("CREATE TABLE t (seq INTEGER PRIMARY KEY, k INTEGER)"),
        _triggers("INSERT INTO t (k) VALUES ({ref}.{key})"),
    ],
    "key2_autoincrement": [
        _table("CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, k INTEGER)"),
        _triggers("INSERT INTO t (k) VALUES ({ref}.{key})"),
    ],
    "changelog_no_check": [
        _table(f"CREATE TABLE t (seq INTEGER PRIMARY KEY, {_COLUMNS.format(nn='', check='')})"),
        _triggers(_KEY_ONLY),
    ],
    "changelog_in_check": [
        _table(f"CREATE TABLE t (seq INTEGER PRIMARY KEY, {_COLUMNS.format(nn=' NOT NULL', check=_IN_CHECK)})"),
        _triggers(_KEY_ONLY),
    ],
    "changelog_cmp_check": [
        _table(f"CREATE TABLE t (seq INTEGER PRIMARY KEY, {_COLUMNS.format(nn=' NOT NULL', check=_CMP_CHECK)})"),
        _triggers(_KEY_ONLY),
    ],
    "captured": [],
    "captured_v6": [_installed(lambda s: s, v6_trigger_sql)],
    "captured_no_when": [_installed(lambda s: re.sub(r" WHEN .*? BEGIN ", " BEGIN ", s) if " UPDATE " in s else s)],
    "captured_no_ts": [_installed(lambda s: s.replace(NOW_MS, "0"))],
}


def _variant_store(path: Path, changes: list[Change] | None) -> sqlite3.Connection:
    conn = _store(path, "plain" if changes is None else "captured")
    if changes:
        conn.execute("BEGIN IMMEDIATE")
        for change in changes:
            change(conn)
        conn.execute("COMMIT")
    return conn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated variants (default: all)")
    args = parser.parse_args()
    names = ["plain", *(args.only.split(",") if args.only else VARIANTS)]
    samples: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for shape, batch in (("single", 1), ("batch", args.rows)):
                for name in names:
                    conn = _variant_store(Path(tmp) / f"{shape}-{name}-{rep}.db", VARIANTS.get(name))
                    rates = _run(conn, args.rows, batch)
                    conn.close()
                    for op in OPS:
                        samples.setdefault((shape, name, op), []).append(rates[f"cpu/{op}"])
    print(f"CPU time per row / plain's, medians of {args.reps}; load average {os.getloadavg()[0]:.1f} at the end")
    for shape in ("single", "batch"):
        for name in names:
            ratios = [
                statistics.median(samples[shape, "plain", op]) / statistics.median(samples[shape, name, op])
                for op in OPS
            ]
            print(f"{shape:6} {name:26} " + "  ".join(f"{op} {r:.2f}" for op, r in zip(OPS, ratios, strict=True)))


if __name__ == "__main__":
    main()
