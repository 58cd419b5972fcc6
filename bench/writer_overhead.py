"""The writer's cost of capture: insert/update/delete rates on a store with and without the triggers.

The store is configured like Caxton's writer (STORE.md): WAL, synchronous=NORMAL, foreign_keys=ON.
Raw sqlite3, one connection, statements as the runtime issues them (an entity row with a JSON
observations array and metadata; an update rewrites observations; a delete cascades to relations
and the embedding). Two shapes: one row per commit (BEGIN IMMEDIATE .. COMMIT around each
statement) and batches of ``--batch`` rows per commit. Each (shape, capture) pair is measured
``--reps`` times, interleaved, on fresh stores in a temp dir; medians and ratios are reported.

Usage: PYTHONPATH=. .venv/bin/python bench/writer_overhead.py [--rows 2000] [--batch 100] [--reps 5]
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
from replicator.capture.triggers import CAPTURE_VERSION
from replicator.store.schema import DDL, WRITER_PRAGMAS, pack_vector

OPS = ("insert", "update", "delete")


def _store(path: Path, captured: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in WRITER_PRAGMAS:
        conn.execute(pragma)
    conn.executescript(DDL)
    if captured:
        install(path)
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
        started = time.perf_counter()
        for first in range(0, rows, batch):
            conn.execute("BEGIN IMMEDIATE")
            for i in range(first, min(first + batch, rows)):
                work[op](i)
            conn.execute("COMMIT")
        rates[op] = rows / (time.perf_counter() - started)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/writer_overhead.json"))
    args = parser.parse_args()

    samples: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for shape, batch in (("single", 1), ("batch", args.batch)):
                for captured in (False, True):
                    path = Path(tmp) / f"{shape}-{captured}-{rep}.db"
                    conn = _store(path, captured)
                    rates = _run(conn, args.rows, batch)
                    conn.close()
                    key = f"{shape}/{'captured' if captured else 'plain'}"
                    for op, rate in rates.items():
                        samples.setdefault(key, {}).setdefault(op, []).append(rate)

    medians = {key: {op: round(statistics.median(v)) for op, v in ops.items()} for key, ops in samples.items()}
    # ratio = time per row with capture / time per row without (1.0 = free; the goal is <= 1.5 single-row)
    ratios = {
        shape: {op: round(medians[f"{shape}/plain"][op] / medians[f"{shape}/captured"][op], 2) for op in OPS}
        for shape in ("single", "batch")
    }
    result = {
        "command": "PYTHONPATH=. .venv/bin/python bench/writer_overhead.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}",
        "capture_version": CAPTURE_VERSION,
        "rows_per_op": args.rows,
        "batch": args.batch,
        "reps": args.reps,
        "rows_per_second_median": medians,
        "time_ratio_captured_over_plain": ratios,
        "note": "insert = an entity row (+ its embedding for every other row); delete cascades to the embedding",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
