"""The cutover's pre-check (issue 14, item 2): the full comparison runs before the fence, while the
writers write; keys that differ are settled by re-reading them once the sink reached the store's head,
and those still differing are compared again under the fence, where a difference aborts.

The destination here is a second store file read by the store's own reader (the comparison is the
same code either way); the sink's position is a stand-in. Real SQLite, fake clock for the waits."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from replicator.capture.install import install
from replicator.capture.triggers import head_seq
from replicator.cutover import config, cutover, precheck, preflight, state
from replicator.position import Heartbeat, PartitionKey, SinkPosition
from replicator.testing.clock import FakeClock
from replicator.testing.writer import MemoryWriter
from replicator.validation.diff import Mismatch
from replicator.validation.store import StoreReader
from tests.unit.test_cutover_fence import CAXTON, FakeTarget


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "memory.db"
    writer = MemoryWriter.create(db)
    alice = writer.create_entity("alice", "person", ["likes tea"])
    bob = writer.create_entity("bob", "person", [])
    writer.create_relation(alice, bob, "knows")
    writer.close()
    install(db)
    (tmp_path / "caxton.yaml").write_text(CAXTON)
    return db


def replica(db: Path, copy: Path | None = None) -> Path:
    """A destination holding exactly what the store holds now (SQLite's backup: WAL included)."""
    copy = copy or db.parent / "destination.db"
    source, target = sqlite3.connect(db), sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    return copy


def at(seq: int) -> SinkPosition:
    now = time.time_ns() // 1_000_000
    return SinkPosition("sink", {}, {PartitionKey("t", 0): Heartbeat(seq, now)}, {"t": 1}, seq, now)


def test_a_key_changed_in_flight_settles_once_the_sink_reaches_the_store(store: Path) -> None:
    dest = replica(store)
    MemoryWriter(store).add_observations(1, ["moved to Oslo"])  # the sink has not applied it yet
    first = [Mismatch("neo4j", "entity", 1, "different", ("observations",))]

    def position() -> SinkPosition:
        replica(store, dest)  # ... and now it has
        return at(head_seq(sqlite3.connect(store)))

    settled = precheck.settle("neo4j", store, first, lambda: StoreReader(dest), position, clock=FakeClock())
    assert settled.suspects == 1
    assert settled.rounds == 1
    assert not settled.unsettled


def test_a_key_that_keeps_differing_is_left_to_the_fence_which_finds_it(store: Path) -> None:
    dest = replica(store)
    MemoryWriter(dest).add_observations(1, ["a change the store never made"])
    first = [Mismatch("neo4j", "entity", 1, "different", ("observations",))]
    first.append(Mismatch("neo4j", "relation", 1, "missing"))
    clock = FakeClock()
    settled = precheck.settle("neo4j", store, first, lambda: StoreReader(dest), lambda: at(0), clock=clock)
    assert settled.unsettled == precheck.Keys(frozenset({1}), frozenset())  # the relation agreed
    assert settled.rounds == precheck.SETTLE_ROUNDS
    assert clock.now - 1000.0 >= precheck.SETTLE_ROUNDS * precheck.SETTLE_WAIT_S  # waited for the sink each round
    problems = precheck.recheck("neo4j", store, StoreReader(dest), settled.unsettled)
    assert [p.split(" (")[0] for p in problems] == ["neo4j entity 1: different"]
    assert "observations" in problems[0]
    assert precheck.recheck("neo4j", store, StoreReader(replica(store, dest)), settled.unsettled) == []


def test_the_sample_under_the_fence_adds_store_ids_to_the_unsettled_keys(store: Path) -> None:
    keys = precheck.with_sample(store, precheck.Keys(frozenset({99}), frozenset({7})), 10)
    assert keys.entities == {1, 2, 99}
    assert keys.relations == {7}


class Prechecked(FakeTarget):
    """A caught-up sink whose pre-check writes to the store (as a live writer does meanwhile) and
    reports ``problems``."""

    def __init__(self, name: str, db: Path, problems: list[str]) -> None:
        super().__init__(name, db)
        self.found, self.wrote_during_precheck = problems, False

    def precheck(self, store: Path) -> list[str]:
        MemoryWriter(store, busy_timeout_ms=100).create_entity("written during the pre-check", "concept")
        self.wrote_during_precheck = True
        return self.found


def test_the_precheck_runs_before_the_fence_while_writers_write(store: Path) -> None:
    target = Prechecked("neo4j", store, [])
    plan = cutover.CutoverPlan(db=store, config=store.parent / "caxton.yaml", target="neo4j")
    report = cutover.run(plan, [target])
    assert target.wrote_during_precheck, "no pre-check ran"
    assert report.ok, report.reason
    assert list(report.steps_s)[:4] == ["preflight", "precheck", "catch_up", "fence"]


def test_a_precheck_problem_aborts_before_the_fence_and_changes_nothing(store: Path) -> None:
    cfg = store.parent / "caxton.yaml"
    target = Prechecked("neo4j", store, ["neo4j entity 1: different (name)"])
    report = cutover.run(cutover.CutoverPlan(db=store, config=cfg, target="neo4j"), [target])
    assert not report.ok and report.aborted_at == "preflight"
    assert "neo4j entity 1: different (name)" in (report.reason or "")
    assert report.pause_s is None and "fence" not in report.steps_s  # the writers never waited
    assert cfg.read_text() == CAXTON and not config.backup_path(cfg).exists()
    MemoryWriter(store).create_entity("still writable", "concept")
    assert state.load(store).state == "aborted"


class MeetsTheOther(FakeTarget):
    """A caught-up sink whose check under the fence answers only once the other target's check has
    started too: the checks pass only when cutover runs them at once, not one after the other."""

    def __init__(self, name: str, db: Path, barrier: threading.Barrier) -> None:
        super().__init__(name, db)
        self.barrier = barrier

    def quick_check(self, store: Path, sample: int, timeout_s: float = 10.0) -> list[str]:
        try:
            self.barrier.wait(timeout=min(timeout_s, 2.0))
        except threading.BrokenBarrierError:
            return [f"{self.name}: checked alone (the other target's check had not started)"]
        return []


def test_the_checks_under_the_fence_run_at_once_so_the_pause_costs_the_slowest(store: Path) -> None:
    barrier = threading.Barrier(2)
    targets = [MeetsTheOther("neo4j", store, barrier), MeetsTheOther("qdrant", store, barrier)]
    plan = cutover.CutoverPlan(db=store, config=store.parent / "caxton.yaml", target="hybrid", max_pause_s=5.0)
    report = cutover.run(plan, targets)
    assert report.ok, report.reason


class FallsBehind(FakeTarget):
    """A sink caught up at the preflight that stops applying while the pre-check runs (the writers go on)."""

    def __init__(self, name: str, db: Path) -> None:
        super().__init__(name, db, follows=True)

    def precheck(self, store: Path) -> list[str]:
        self.frozen, self.follows = head_seq(sqlite3.connect(store)), False
        writer = MemoryWriter(store)
        for i in range(5):
            writer.create_entity(f"written during the pre-check {i}", "concept")
        return []


def test_a_sink_that_fell_behind_during_the_precheck_is_refused_before_the_fence(store: Path) -> None:
    plan = cutover.CutoverPlan(db=store, config=store.parent / "caxton.yaml", target="neo4j", max_lag=2)
    report = cutover.run(plan, [FallsBehind("neo4j", store)])
    assert not report.ok and report.aborted_at == "preflight", report.reason
    assert "5 changes behind" in (report.reason or "")
    assert report.pause_s is None  # the writers never waited


class Backlogged(FakeTarget):
    """A sink behind the store by a backlog it applies one change per position read (as a sink applies
    batches while cutover polls), and that records how far behind it was when the fence was taken."""

    def __init__(self, name: str, db: Path, backlog: int) -> None:
        super().__init__(name, db, follows=False)
        self.frozen -= backlog
        self.behind_under_fence: list[int] = []

    def position(self, timeout_s: float = 10.0) -> SinkPosition:
        conn = sqlite3.connect(self.db)
        try:
            head, fenced = head_seq(conn), _write_locked(conn)
        finally:
            conn.close()
        if fenced:
            self.behind_under_fence.append(head - self.frozen)
        self.frozen = min(head, self.frozen + 1)
        return super().position(timeout_s)


def _write_locked(conn: sqlite3.Connection) -> bool:
    """Whether another connection holds the store's write lock (the fence)."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return True
    conn.execute("ROLLBACK")
    return False


def test_the_fence_waits_for_the_sinks_to_catch_up_so_the_writers_never_wait_for_a_backlog(store: Path) -> None:
    writer = MemoryWriter(store)
    for i in range(30):
        writer.create_entity(f"backlog {i}", "concept")
    writer.close()
    target = Backlogged("neo4j", store, backlog=30)
    plan = cutover.CutoverPlan(db=store, config=store.parent / "caxton.yaml", target="neo4j", max_pause_s=5.0)
    report = cutover.run(plan, [target])
    assert report.ok, report.reason
    # Under the fence the first read already finds the sink at the final seq: the 30 changes were applied
    # before the writers were made to wait, not while they waited.
    assert target.behind_under_fence[:1] == [0], target.behind_under_fence[:5]
    assert report.steps_s["catch_up"] > 0


class Stalls(FakeTarget):
    """A sink whose first ``slow`` catch-up rounds each take 0.3 s (a checkpoint, a collection), then
    follows the store at once."""

    def __init__(self, name: str, db: Path, slow: int) -> None:
        super().__init__(name, db)
        self.slow = slow
        self.waiting_since: float | None = None

    def position(self, timeout_s: float = 10.0) -> SinkPosition:
        self.frozen = head_seq(sqlite3.connect(self.db))
        if self.slow > 0:
            now = time.monotonic()
            self.waiting_since = now if self.waiting_since is None else self.waiting_since
            if now - self.waiting_since < 0.3:
                self.frozen -= 1  # not there yet
            else:
                self.slow, self.waiting_since = self.slow - 1, None
        self.follows = False
        return super().position(timeout_s)


def test_a_sink_that_stalls_for_a_few_rounds_gets_more_rounds_before_the_fence(store: Path) -> None:
    caught = preflight.catch_up(store, [Stalls("neo4j", store, slow=6)], timeout_s=10.0)
    assert (caught.rounds, caught.settled) == (7, True), caught


class PrechecksWithTheOther(FakeTarget):
    """A target whose pre-check finishes only once the other target's pre-check has started too: the
    cutover passes only when it runs the full comparisons at once. Each compares a different server
    through a different client (the graph through Bolt, the points through Qdrant or the sink's
    endpoint), so one after the other cost their sum: at 100K entities 292 s before the fence."""

    def __init__(self, name: str, db: Path, barrier: threading.Barrier) -> None:
        super().__init__(name, db)
        self.barrier = barrier

    def precheck(self, store: Path) -> list[str]:
        try:
            self.barrier.wait(timeout=2.0)
        except threading.BrokenBarrierError:
            return [f"{self.name}: compared alone (the other target's pre-check had not started)"]
        time.sleep(0.1 if self.name == "neo4j" else 0.3)
        return []


def test_the_targets_prechecks_run_at_once_and_each_ones_time_is_reported(store: Path) -> None:
    barrier = threading.Barrier(2)
    targets = [PrechecksWithTheOther("neo4j", store, barrier), PrechecksWithTheOther("qdrant", store, barrier)]
    plan = cutover.CutoverPlan(db=store, config=store.parent / "caxton.yaml", target="hybrid")
    report = cutover.run(plan, targets)
    assert report.ok, report.reason
    assert set(report.precheck_s) == {"neo4j", "qdrant"}, report.precheck_s
    assert report.precheck_s["qdrant"] >= 0.3 and report.precheck_s["neo4j"] >= 0.1, report.precheck_s
