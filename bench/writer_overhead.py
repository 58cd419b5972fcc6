"""The writer's cost of capture: insert/update/delete rates on a store with and without the triggers.

The store is configured like Caxton's writer (STORE.md): WAL, synchronous=NORMAL, foreign_keys=ON.
Raw sqlite3, one connection, statements as the runtime issues them (an entity row with a JSON
observations array and metadata; an update rewrites observations; a delete cascades to relations
and the embedding). Two shapes: one row per commit (BEGIN IMMEDIATE .. COMMIT around each
statement) and ``--batch`` rows per commit (default: all ``--rows`` in one transaction). Four
writers, measured in the same run: ``plain`` (no triggers), ``floor`` (a trigger that only records
(table, op, row id) into the changelog: the least any trigger-based capture can cost),
``captured`` (``replicator source install``) and ``v6``, the triggers as capture v6 generated them
(each looked up the reverse process's meta row; ``replicator/testing/legacy_capture.py``): the
before figure in the same run. Each
(shape, writer) pair is measured ``--reps`` times, interleaved, on fresh stores in a temp dir;
medians and time ratios are reported.

Usage: PYTHONPATH=. .venv/bin/python bench/writer_overhead.py [--rows 2000] [--batch 0] [--reps 5]
       [--out bench/results/writer_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from replicator.capture.install import install
from replicator.capture.triggers import CAPTURE_VERSION, CHANGELOG, KEY_COLUMN, trigger_names
from replicator.store.schema import DDL, TABLES, WRITER_PRAGMAS, pack_vector
from replicator.testing.legacy_capture import v6_trigger_sql

OPS = ("insert", "update", "delete")
WRITERS = ("plain", "floor", "captured", "v6")


def _v6_triggers(conn: sqlite3.Connection) -> None:
    """Replace the installed triggers by v6's (v6's changelog table is the installed one)."""
    for table in TABLES:
        columns = [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]
        for name, sql in zip(trigger_names(table), v6_trigger_sql(table, columns), strict=True):
            conn.execute(f'DROP TRIGGER "{name}"')
            conn.execute(sql)


def _floor_triggers(conn: sqlite3.Connection) -> None:
    """Replace capture's triggers by ones that record only (table, op, row id): the floor."""
    for table, key in KEY_COLUMN.items():
        for name, (event, op, ref) in zip(
            trigger_names(table), (("INSERT", "c", "NEW"), ("UPDATE", "u", "NEW"), ("DELETE", "d", "OLD")), strict=True
        ):
            conn.execute(f'DROP TRIGGER "{name}"')
            conn.execute(
                f'CREATE TRIGGER "{name}" AFTER {event} ON {table} BEGIN INSERT INTO {CHANGELOG} '
                f"(tbl, op, row_id, ts_ms) VALUES ('{table}', '{op}', {ref}.{key}, 0); END"
            )


def _store(path: Path, writer: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in WRITER_PRAGMAS:
        conn.execute(pragma)
    conn.executescript(DDL)
    if writer != "plain":
        install(path)
    if writer == "floor":
        _floor_triggers(conn)
    if writer == "v6":
        _v6_triggers(conn)
    return conn


def _run(conn: sqlite3.Connection, rows: int, batch: int) -> dict[str, float]:
    """Rows per second for each op; ``batch`` statements per commit."""
    vector = pack_vector([0.01] * 384)
    observations = json.dumps([f"observation {i} about something" for i in range(5)])
    rates: dict[str, float] = {}
    work: dict[str, Any] = {
        "insert": lambda i: (
            conn.execute(
                "INSERT INTO entities (name, entity_type, observations, created_at, updated_at, metadata)"
                " VALUES (?, 'concept', ?, ?, ?, ?)",
                (f"entity {i}", observations, i, i, '{"source": "bench"}'),
            ),
            conn.execute(
                "INSERT INTO embeddings (entity_id, embedding, created_at) VALUES (last_insert_rowid(), ?, ?)",
                (vector, i),
            )
            if i % 2 == 0
            else None,
        ),
        "update": lambda i: conn.execute(
            "UPDATE entities SET observations = ?, updated_at = ?, version = version + 1 WHERE name = ?",
            (observations[:-1] + f', "new {i}"]', i + 1, f"entity {i}"),
        ),
        "delete": lambda i: conn.execute("DELETE FROM entities WHERE name = ?", (f"entity {i}",)),
    }
    for op in OPS:
        started, cpu = time.perf_counter(), time.process_time()
        for first in range(0, rows, batch):
            conn.execute("BEGIN IMMEDIATE")
            for i in range(first, min(first + batch, rows)):
                work[op](i)
            conn.execute("COMMIT")
        rates[op] = rows / (time.perf_counter() - started)
        rates[f"cpu/{op}"] = rows / max(time.process_time() - cpu, 1e-9)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=0, help="rows per commit in the batch shape (0: all --rows)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/writer_overhead.json"))
    args = parser.parse_args()
    batch_rows = args.batch or args.rows

    samples: dict[str, dict[str, list[float]]] = {}
    load_at_start = round(os.getloadavg()[0], 1)
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for shape, batch in (("single", 1), ("batch", batch_rows)):
                for writer in WRITERS:
                    path = Path(tmp) / f"{shape}-{writer}-{rep}.db"
                    conn = _store(path, writer)
                    rates = _run(conn, args.rows, batch)
                    conn.close()
                    key = f"{shape}/{writer}"
                    for op, rate in rates.items():
                        samples.setdefault(key, {}).setdefault(op, []).append(rate)

    medians = {key: {op: round(statistics.median(v)) for op, v in ops.items()} for key, ops in samples.items()}

    # ratio = time per row of one writer / time per row of another (1.0 = free; the goal is <= 1.5).
    # ``cpu``: from the process's CPU time, which other load on a shared machine does not inflate (the
    # writer's work is in-process: with synchronous=NORMAL a WAL commit does not fsync).
    def ratio(over: str, under: str, prefix: str = "") -> dict[str, dict[str, float]]:
        return {
            shape: {
                op: round(medians[f"{shape}/{under}"][prefix + op] / medians[f"{shape}/{over}"][prefix + op], 2)
                for op in OPS
            }
            for shape in ("single", "batch")
        }

    result = {
        "command": "PYTHONPATH=. .venv/bin/python bench/writer_overhead.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}",
        "capture_version": CAPTURE_VERSION,
        "rows_per_op": args.rows,
        "batch": batch_rows,
        "reps": args.reps,
        "rows_per_second_median": medians,
        "time_ratio_captured_over_plain": ratio("captured", "plain"),
        "time_ratio_floor_over_plain": ratio("floor", "plain"),
        "time_ratio_captured_over_floor": ratio("captured", "floor"),
        "time_ratio_v6_over_plain": ratio("v6", "plain"),
        "cpu_time_ratio_captured_over_plain": ratio("captured", "plain", "cpu/"),
        "cpu_time_ratio_floor_over_plain": ratio("floor", "plain", "cpu/"),
        "cpu_time_ratio_captured_over_floor": ratio("captured", "floor", "cpu/"),
        "cpu_time_ratio_v6_over_plain": ratio("v6", "plain", "cpu/"),
        "cpu_time_ratio_v6_over_floor": ratio("v6", "floor", "cpu/"),
        "load_average_1m_at_start": load_at_start,
        "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        "note": "insert = an entity row (+ its embedding for every other row); delete cascades to the embedding; "
        "floor = a trigger recording only (table, op, row id) into the installed changelog; "
        "v6 = capture v6's triggers (a meta-table lookup in each) over the installed changelog",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
