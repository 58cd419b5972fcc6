"""The initial snapshot of a large store (issue 3: 100K entities, 1M relations), killed half way.

1. Builds a store of ``--entities`` entities (each with a 384-d embedding) and ``--relations``
   relations (raw sqlite3, batched), then installs capture.
2. Runs ``replicator source run`` as a process; when its ``/metrics`` says ``--kill-at`` of the rows
   are published, ``kill -9``; starts it again and waits for ``event=snapshot_done``.
3. Reads the topics back (read_committed) and counts ``op=r`` events per table and distinct keys: a
   resumed snapshot publishes every row exactly once (no row again, none missing).

Reports rows/s of each run, the source's peak RSS (``VmHWM``: chunks keep memory flat whatever the
store's size), and the counts. Needs the local Kafka (REPLICATOR_KAFKA_BOOTSTRAP); throwaway topics.

Usage: PYTHONPATH=. .venv/bin/python bench/snapshot_large.py [--entities 100000] [--relations 1000000]
       [--chunk-rows 5000] [--kill-at 0.5] [--dir DIR] [--out bench/results/snapshot_large.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from replicator.capture.install import install
from replicator.demo.daemons import Daemon, free_port
from replicator.events.avro import HEARTBEAT, decode_any, decode_key
from replicator.observe.endpoint import scrape
from replicator.store.schema import DDL, TABLES, WRITER_PRAGMAS, pack_vector
from replicator.testing.replay import read_topics
from replicator.transport.kafka import delete_topic
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import change_topic, positions_topic


def build_store(path: Path, entities: int, relations: int) -> dict[str, int]:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in WRITER_PRAGMAS:
        conn.execute(pragma)
    conn.executescript(DDL)
    rng = random.Random(7)
    observations = json.dumps(["works on the migration", "prefers short answers", "met on 2026-11-02"])
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO entities (id, name, entity_type, observations, created_at, updated_at, metadata)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        ((i, f"entity {i}", "concept", observations, i, i, '{"source": "bench"}') for i in range(1, entities + 1)),
    )
    vector = pack_vector([rng.uniform(-1, 1) for _ in range(384)])
    conn.executemany(
        "INSERT INTO embeddings (entity_id, embedding, created_at) VALUES (?, ?, ?)",
        ((i, vector, i) for i in range(1, entities + 1)),
    )
    per = max(1, relations // entities)
    conn.executemany(
        "INSERT INTO relations (from_entity_id, to_entity_id, relation_type, created_at, updated_at)"
        " VALUES (?, ?, 'relates_to', ?, ?)",
        itertools.islice(
            ((src, (src + k) % entities + 1, src, src) for src in range(1, entities + 1) for k in range(1, per + 1)),
            relations,
        ),
    )
    conn.execute("COMMIT")
    counts = {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}
    conn.close()
    install(path)
    return counts


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _source(db: Path, prefix: str, config: Path, log: Path, kafka: KafkaSettings) -> Daemon:
    argv = ["source", "run", "--db", str(db), "--topic-prefix", prefix, "--config", str(config),
            "--bootstrap-servers", kafka.bootstrap_servers]  # fmt: skip
    return Daemon("source", argv, log)


def _published(port: int) -> float:
    return scrape(port, "replicator_source_snapshot_rows_total") or 0.0


def count_snapshot(kafka: KafkaSettings, prefix: str) -> dict[str, Any]:
    """op=r events per table, distinct keys, and keys seen more than once (read_committed)."""
    events: Counter[str] = Counter()
    keys: dict[str, set[int]] = {t: set() for t in TABLES}
    repeated: Counter[str] = Counter()

    def count(table: str, _partition: int, raw_key: bytes, value: bytes | None) -> None:
        if value is None:
            return
        name, record = decode_any(value)
        if name == HEARTBEAT or record["op"] != "r":
            return
        events[table] += 1
        key = decode_key(raw_key)
        if key in keys[table]:
            repeated[table] += 1
        keys[table].add(key)

    read_topics(kafka, prefix, count, timeout_s=600)
    return {
        "snapshot_events": dict(events),
        "distinct_keys": {t: len(k) for t, k in keys.items()},
        "rows_published_twice": dict(repeated),
    }


def kill_then_resume(db: Path, prefix: str, tmp: Path, total: int, args: argparse.Namespace) -> dict[str, Any]:
    """The source killed (-9) once ``--kill-at`` of the rows are published, then run to snapshot_done."""
    kafka = KafkaSettings.from_env()
    port = free_port()
    config = tmp / "source.yaml"
    config.write_text(f"source:\n  snapshot_chunk_rows: {args.chunk_rows}\n  metrics_port: {port}\n")
    log = tmp / "source.log"
    source = _source(db, prefix, config, log, kafka)
    source.start()
    start = time.perf_counter()
    while (before_kill := _published(port)) < args.kill_at * total:
        if not source.alive():
            raise SystemExit(log.read_text()[-3000:])
        time.sleep(0.05)
    assert source.process is not None
    first_s, first_rss = time.perf_counter() - start, _peak_rss_mb(source.process.pid)
    source.kill()
    source.start()
    start = time.perf_counter()
    while "event=snapshot_done" not in log.read_text():
        if not source.alive():
            raise SystemExit(log.read_text()[-3000:])
        time.sleep(0.2)
    assert source.process is not None
    second_s, after_restart = time.perf_counter() - start, _published(port)
    second_rss = _peak_rss_mb(source.process.pid)
    source.stop(60)
    resumed = [line.split("event=", 1)[1] for line in log.read_text().splitlines() if "event=snapshot_resuming" in line]
    return {
        "first_run": {"rows_before_kill_9": int(before_kill), "s": round(first_s, 1),
                      "rows_per_s": round(before_kill / first_s), "peak_rss_mb": round(first_rss)},
        "resumed_run": {"log": resumed[0] if resumed else None, "rows": int(after_restart),
                        "s_to_snapshot_done": round(second_s, 1), "rows_per_s": round(after_restart / second_s),
                        "peak_rss_mb": round(second_rss)},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--relations", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=5000)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of rows published before kill -9")
    parser.add_argument("--dir", type=Path, default=None, help="where the store goes (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/snapshot_large.json"))
    args = parser.parse_args()
    kafka = KafkaSettings.from_env()
    prefix = f"bench{uuid.uuid4().hex[:8]}.caxton.memory"
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        db = Path(tmp) / "memory.db"
        t0 = time.perf_counter()
        counts = build_store(db, args.entities, args.relations)
        build_s = time.perf_counter() - t0
        try:
            runs = kill_then_resume(db, prefix, Path(tmp), sum(counts.values()), args)
            read_back = count_snapshot(kafka, prefix)
        finally:
            for table in TABLES:
                delete_topic(kafka, change_topic(prefix, table))
            delete_topic(kafka, positions_topic(prefix))
    result = {
        "command": " ".join(["bench/snapshot_large.py", *sys.argv[1:]]),
        "store_rows": counts,
        "chunk_rows": args.chunk_rows,
        "build_store_s": round(build_s, 1),
        **runs,
        "read_back": read_back,
        "every_row_exactly_once": read_back["distinct_keys"] == counts and not read_back["rows_published_twice"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "note": "rows_per_s of the resumed run includes its start-up (imports, Kafka connection)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"$ PYTHONPATH=. .venv/bin/python {result['command']}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
