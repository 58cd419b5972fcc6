"""The fence and the cutover state machine on a real SQLite store, with stand-in sink positions
(the Target protocol is ours; the real sinks are exercised by the integration tests)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from replicator.capture.install import install
from replicator.migrate import config, cutover, fence, state
from replicator.position import Heartbeat, PartitionKey, SinkPosition
from replicator.store.writer import MemoryWriter

CAXTON = config.sample_config()


class FakeTarget:
    """Reports a watermark that follows the store's head (a caught-up sink) or stays put."""

    def __init__(self, name: str, db: Path, *, follows: bool = True, problems: list[str] | None = None) -> None:
        self.name, self.db, self.follows, self.problems = name, db, follows, problems or []
        self.frozen = fence.head_seq(sqlite3.connect(db))

    def position(self) -> SinkPosition:
        seq = fence.head_seq(sqlite3.connect(self.db)) if self.follows else self.frozen
        now = time.time_ns() // 1_000_000
        return SinkPosition(self.name, {}, {PartitionKey("t", 0): Heartbeat(seq, now)}, {"t": 1}, seq, now)

    def quick_check(self, store: Path, sample: int) -> list[str]:
        return self.problems


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "memory.db"
    writer = MemoryWriter.create(db)
    writer.create_entity("alice", "person", ["likes tea"])
    writer.close()
    install(db)
    (tmp_path / "caxton.yaml").write_text(CAXTON)
    return db


def test_writers_wait_during_the_fence_and_resume_after_release(store: Path) -> None:
    held = fence.acquire(store, timeout_s=1)
    done: list[float] = []

    def write() -> None:
        writer = MemoryWriter(store, busy_timeout_ms=5000)
        writer.create_entity("bob", "person")
        done.append(time.monotonic())
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.3)
    assert not done, "the writer must wait while the fence is held"
    released = time.monotonic()
    held.release()
    thread.join(5)
    assert done and done[0] >= released
    assert MemoryWriter(store).entity_id("bob") is not None


def test_refusal_fails_waiting_and_later_writers_with_the_message(store: Path) -> None:
    held = fence.acquire(store, timeout_s=1)
    errors: list[str] = []

    def write() -> None:
        try:
            MemoryWriter(store, busy_timeout_ms=5000).create_entity("bob", "person")
        except sqlite3.DatabaseError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.2)
    held.refuse_writes_and_release(fence.refusal_message("neo4j", "2026-11-24T10:00:00Z"))
    thread.join(5)
    assert errors == ["memory store moved to neo4j at 2026-11-24T10:00:00Z; reload caxton.yaml"]
    with pytest.raises(sqlite3.DatabaseError, match="memory store moved to neo4j"):
        MemoryWriter(store).delete_entity(1)
    assert fence.remove_refusal(store)
    MemoryWriter(store).create_entity("carol", "person")  # writes resume


def test_cutover_switches_config_and_fences(store: Path) -> None:
    cfg = store.parent / "caxton.yaml"
    plan = cutover.CutoverPlan(db=store, config=cfg, target="hybrid", max_pause_s=2)
    report = cutover.run(plan, [FakeTarget("neo4j", store), FakeTarget("qdrant", store)])
    assert report.ok, report.reason
    assert report.pause_s is not None and report.pause_s < 2
    assert 'backend: "hybrid"' in cfg.read_text()
    assert state.load(store).state == "cut_over"
    with pytest.raises(sqlite3.DatabaseError, match="moved to hybrid"):
        MemoryWriter(store).create_entity("late", "person")
    done = cutover.rollback(store, None)
    assert len(done) == 2, done
    assert cfg.read_text() == CAXTON
    MemoryWriter(store).create_entity("after-rollback", "person")
    assert state.load(store).state == "rolled_back"


def test_drain_timeout_aborts_and_changes_nothing(store: Path) -> None:
    cfg = store.parent / "caxton.yaml"
    lagging = FakeTarget("qdrant", store, follows=False)
    MemoryWriter(store).create_entity("unreplicated", "concept")  # head moves past the frozen watermark
    plan = cutover.CutoverPlan(db=store, config=cfg, target="hybrid", max_pause_s=0.5)
    report = cutover.run(plan, [FakeTarget("neo4j", store), lagging])
    assert not report.ok
    assert report.aborted_at == "drain"
    assert "qdrant at" in (report.reason or "")
    assert cfg.read_text() == CAXTON
    assert not config.backup_path(cfg).exists()
    MemoryWriter(store).create_entity("still-writable", "concept")
    assert state.load(store).state == "aborted"


def test_failed_validation_aborts(store: Path) -> None:
    cfg = store.parent / "caxton.yaml"
    plan = cutover.CutoverPlan(db=store, config=cfg, target="neo4j")
    report = cutover.run(plan, [FakeTarget("neo4j", store, problems=["neo4j: 1 entity missing: id 1"])])
    assert not report.ok and report.aborted_at == "validate"
    assert cfg.read_text() == CAXTON


def test_preflight_refuses_a_lagging_or_silent_sink(store: Path) -> None:
    cfg = store.parent / "caxton.yaml"
    writer = MemoryWriter(store)
    lagging = FakeTarget("neo4j", store, follows=False)
    for i in range(5):
        writer.create_entity(f"e{i}", "concept")
    plan = cutover.CutoverPlan(db=store, config=cfg, target="neo4j", max_lag=2)
    problems = cutover.preflight(plan, [lagging])
    assert problems == ["neo4j: 5 changes behind the store (--max-lag 2)"]
