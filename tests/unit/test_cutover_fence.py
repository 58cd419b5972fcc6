"""The fence and the cutover state machine on a real SQLite store, with stand-in sink positions
(the Target protocol is ours; the real sinks are exercised by the integration tests)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from replicator.capture.install import install
from replicator.capture.triggers import head_seq
from replicator.cutover import config, cutover, fence, preflight, rollback, state
from replicator.position import Heartbeat, PartitionKey, SinkPosition
from replicator.testing.writer import MemoryWriter

CAXTON = config.sample_config()


class FakeTarget:
    """Reports a watermark that follows the store's head (a caught-up sink) or stays put."""

    def __init__(self, name: str, db: Path, *, follows: bool = True, problems: list[str] | None = None) -> None:
        self.name, self.db, self.follows, self.problems = name, db, follows, problems or []
        self.frozen = head_seq(sqlite3.connect(db))

    def position(self, timeout_s: float = 10.0) -> SinkPosition:
        seq = head_seq(sqlite3.connect(self.db)) if self.follows else self.frozen
        now = time.time_ns() // 1_000_000
        return SinkPosition(self.name, {}, {PartitionKey("t", 0): Heartbeat(seq, now)}, {"t": 1}, seq, now)

    def precheck(self, store: Path) -> list[str]:
        return []

    def quick_check(self, store: Path, sample: int, timeout_s: float = 10.0) -> list[str]:
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
    done = rollback.rollback(store, None)
    assert len(done) == 2, done
    assert cfg.read_text() == CAXTON
    MemoryWriter(store).create_entity("after-rollback", "person")
    assert state.load(store).state == "rolled_back"


def _cut_over(store: Path) -> Path:
    cfg = store.parent / "caxton.yaml"
    report = cutover.run(cutover.CutoverPlan(db=store, config=cfg, target="neo4j"), [FakeTarget("neo4j", store)])
    assert report.ok, report.reason
    return cfg


def _still_cut_over(store: Path, cfg: Path) -> None:
    assert 'backend: "neo4j"' in cfg.read_text()
    assert state.load(store).state == "cut_over"
    with pytest.raises(sqlite3.DatabaseError, match="moved to neo4j"):
        MemoryWriter(store).create_entity("still fenced", "person")


def test_rollback_refuses_when_the_new_backend_took_writes(store: Path) -> None:
    cfg = _cut_over(store)
    asked: list[str] = []

    def diverged(target: str) -> list[str]:
        asked.append(target)
        return [f"neo4j: entity {i} extra" for i in range(12)]

    with pytest.raises(rollback.RollbackRefused) as refused:
        rollback.rollback(store, None, divergence=diverged)
    assert asked == ["neo4j"]
    text = str(refused.value)
    assert "neo4j differs from the store" in text and "entity 9 extra" in text and "... and 2 more" in text
    assert "entity 10 extra" not in text  # ten shown, the rest counted
    assert "--discard-new-writes" in text
    _still_cut_over(store, cfg)  # nothing changed

    assert rollback.rollback(store, None, divergence=lambda _: []) != ["nothing to undo"]  # equal: rolls back
    assert cfg.read_text() == CAXTON
    MemoryWriter(store).create_entity("after-rollback", "person")


def test_rollback_refuses_when_the_new_backend_cannot_be_checked(store: Path) -> None:
    cfg = _cut_over(store)

    def unreachable(target: str) -> list[str]:
        raise ConnectionRefusedError("bolt://127.0.0.1:7687 refused the connection")

    with pytest.raises(rollback.RollbackRefused, match=r"cannot check whether neo4j took writes.*refused"):
        rollback.rollback(store, None, divergence=unreachable)
    _still_cut_over(store, cfg)
    rollback.rollback(store, None, divergence=None)  # the operator's explicit --discard-new-writes
    assert cfg.read_text() == CAXTON
    assert state.load(store).state == "rolled_back"


def test_an_interrupted_cutover_is_resolved_without_the_check(store: Path) -> None:
    cfg = store.parent / "caxton.yaml"
    state.save(store, state.load(store), state="cutting_over", step="drain", target="neo4j", pid=2**22 + 1)

    def never(target: str) -> list[str]:
        raise AssertionError("the runtime never wrote to the new backend: the config was not switched")

    rollback.rollback(store, cfg, divergence=never)
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
    problems = preflight.preflight(plan, [lagging])
    assert problems == ["neo4j: 5 changes behind the store (--max-lag 2)"]
