"""``migrate`` (live) shows the source's snapshot while it runs: rows done / total and a percentage,
read from where the source records them (its ``/metrics``), plain lines off a terminal and a tqdm bar
on one, then stops showing it once complete (the lag per sink follows)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from replicator.config import MigrationConfig
from replicator.config.model import SourceOptions
from replicator.migration import history
from replicator.migration.live import SNAPSHOT_LABEL, Live, LivePlan
from replicator.migration.progress import Progress
from replicator.source.metrics import MetricsServer, SnapshotProgress, SourceMetrics


def _live(tmp_path: Path, progress: Progress, port: int | None = None) -> Live:
    config = MigrationConfig(source=SourceOptions(metrics_port=port))
    plan = LivePlan(tmp_path / "replicator.yaml", config, tmp_path / "memory.db", tmp_path / "caxton.yaml")
    migration = history.Migration(history.new_id(), "live", "hybrid", "replicator.yaml")
    return Live(plan, migration, log=progress.line, wait_for_go=lambda: True, show=progress.update)


def test_snapshot_lines_show_rows_done_of_total_and_a_percentage_until_complete(tmp_path: Path) -> None:
    out = io.StringIO()
    live = _live(tmp_path, Progress(out, every_s=0.0, terminal=False))
    said = iter([None, SnapshotProgress(500, 2000), SnapshotProgress(2000, 2000), SnapshotProgress(2000, 2000)])
    live.read_snapshot = lambda: next(said)
    for _ in range(4):
        live.show_snapshot()
    assert out.getvalue().splitlines() == [
        "  source snapshot rows         500 / 2000       25.0%",
        "  source snapshot rows        2000 / 2000      100.0%",
    ]  # and no more once complete


def test_on_a_terminal_the_snapshot_is_a_bar(tmp_path: Path) -> None:
    out = io.StringIO()
    progress = Progress(out, terminal=True)
    live = _live(tmp_path, progress)
    live.read_snapshot = lambda: SnapshotProgress(50, 200)
    live.show_snapshot()
    progress.close()
    assert SNAPSHOT_LABEL in out.getvalue() and "25%" in out.getvalue() and "50/200" in out.getvalue()


def test_the_progress_is_read_from_the_sources_metrics_endpoint(tmp_path: Path) -> None:
    metrics = SourceMetrics()
    server = MetricsServer(metrics, 0, lambda: True)
    try:
        live = _live(tmp_path, Progress(io.StringIO(), terminal=False), port=server.port)
        assert live.read_snapshot() is None  # no snapshot in the source's run (it streams)
        metrics.snapshot_expected.set(120)
        metrics.snapshot_done.set(30)
        assert live.read_snapshot() == SnapshotProgress(30, 120)
    finally:
        server.close()


def test_a_snapshot_done_between_two_looks_is_still_shown_complete(tmp_path: Path) -> None:
    """On a fast machine a small store's snapshot opens and completes between migrate's looks, and the
    sinks are caught up at the first lag (seen in CI: no snapshot line at all): the operator still
    sees it complete before the cutover."""
    out = io.StringIO()
    live = _live(tmp_path, Progress(out, every_s=0.0, terminal=False))
    said = iter([None, SnapshotProgress(98, 98)])
    live.read_snapshot = lambda: next(said, SnapshotProgress(98, 98))
    caught_up = {"sink": "neo4j", "status": "OK", "lag_seq": 0, "lag_events": 0, "lag_seconds": 0.1, "eta_s": 0}
    lag = json.dumps({"source": {"head_seq": 98}, "sinks": [caught_up]})
    live._command = lambda argv, what, timeout_s=600.0, answer="": lag  # type: ignore[method-assign]
    live.catch_up()
    assert "  source snapshot rows          98 / 98        100.0%" in out.getvalue().splitlines()
