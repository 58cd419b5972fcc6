"""The source records its snapshot's progress (rows done / total) in its metrics, and owns reading it
back from its ``/metrics`` text (``migrate`` shows it; nobody re-derives it): a whole snapshot run by
the daemon on a real store with the in-memory broker, and a snapshot resumed after a restart, which
counts the rows an earlier run published."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

from prometheus_client import generate_latest

from replicator.capture.install import install
from replicator.source.metrics import SnapshotProgress, SourceMetrics, read_snapshot_progress, snapshot_progress
from replicator.source.snapshot import SnapshotCursor, SnapshotMeter, read_chunk
from replicator.source.store import StoreReader
from replicator.testing.writer import MemoryWriter
from tests.unit.test_source_daemon import Rig


def _store(path: Path, entities: int) -> Path:
    writer = MemoryWriter.create(path)
    try:
        ids = [writer.create_entity(f"e{i}", "concept", [f"fact {i}"]) for i in range(entities)]
        for a, b in itertools.pairwise(ids):
            writer.create_relation(a, b, "next to")
    finally:
        writer.close()
    install(path)
    return path


def _shown(metrics: SourceMetrics) -> SnapshotProgress | None:
    return snapshot_progress(generate_latest(metrics.registry).decode())


def test_no_snapshot_in_this_run_reads_as_none() -> None:
    assert _shown(SourceMetrics()) is None


def test_the_daemons_snapshot_reads_back_as_every_row_of_the_store(tmp_path: Path) -> None:
    rig = Rig(tmp_path, snapshot_chunk_rows=7)
    rig.write(30)
    rig.run(2.0)
    conn = sqlite3.connect(rig.db)
    rows = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("entities", "relations"))
    conn.close()
    shown = _shown(rig.daemon.metrics)
    assert shown == SnapshotProgress(rows, rows) and shown.share == 1.0


def test_a_resumed_snapshot_counts_what_an_earlier_run_published(tmp_path: Path) -> None:
    db = _store(tmp_path / "memory.db", 20)  # 20 entities, 19 relations
    reader = StoreReader(db)
    identity = reader.check()
    metrics = SourceMetrics()
    meter = SnapshotMeter(metrics, bar=False)
    snap = SnapshotCursor(first_seq=-1, read_seq=reader.begin_snapshot(), table_index=0, after_id=None)
    meter.opened(reader, snap)
    assert _shown(metrics) == SnapshotProgress(0, 39)
    rows = read_chunk(reader, identity.columns, snap, 8, 1 << 20)
    meter.published(len(rows), done=snap.done)
    assert _shown(metrics) == SnapshotProgress(8, 39)
    reader.end_snapshot()
    # a restart: the position's cursor says the 8 first entities are out
    resumed = SnapshotCursor(first_seq=snap.first_seq, read_seq=reader.begin_snapshot(), table_index=snap.table_index,
                             after_id=snap.after_id)  # fmt: skip
    again = SourceMetrics()
    meter = SnapshotMeter(again, bar=False)
    meter.opened(reader, resumed)
    assert _shown(again) == SnapshotProgress(8, 39)
    while not resumed.done:
        rows = read_chunk(reader, identity.columns, resumed, 10, 1 << 20)
        meter.published(len(rows), done=resumed.done)
    assert _shown(again) == SnapshotProgress(39, 39)
    reader.end_snapshot()
    reader.close()


def test_a_source_that_does_not_answer_shows_nothing() -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    assert read_snapshot_progress(port, timeout_s=0.5) is None
