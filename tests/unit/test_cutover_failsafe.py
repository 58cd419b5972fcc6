"""Cutover and rollback fail safe: the order of the switch step under kill -9, rollback comparing
before it discards, a pause bounded for real, and no state left claiming a cutover in progress.

The crash tests run the cutover in a child process (with stand-in sink positions: the real sinks are
exercised by tests/integration/test_cutover_live.py) and SIGKILL it at each point of the switch step.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from replicator.capture.install import install
from replicator.capture.storefile import CaptureError
from replicator.cutover import config, cutover, fence, rollback, state
from replicator.cutover.targets import Neo4jTarget
from replicator.demo.daemons import PipelineConfig
from replicator.errors import ConfigError
from replicator.position import SinkPosition
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.writer import MemoryWriter
from tests.unit.test_cutover_fence import CAXTON, FakeTarget

# The child: a cutover of ``db`` to neo4j with a caught-up stand-in sink, paused at
# REPLICATOR_CUTOVER_PAUSE_AT (set by the test).
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from replicator.cutover import cutover
    from tests.unit.test_cutover_fence import FakeTarget
    db = Path(sys.argv[1])
    plan = cutover.CutoverPlan(db=db, config=db.parent / "caxton.yaml", target="neo4j")
    report = cutover.run(plan, [FakeTarget("neo4j", db)])
    print("finished", report.ok, report.reason)
    """
)
ROOT = str(Path(__file__).resolve().parents[2])


def _takes_writes(db: Path) -> bool:
    conn = sqlite3.connect(db)
    try:
        return not fence.refusal_installed(conn)
    finally:
        conn.close()


def _kill_at(db: Path, point: str, until: object) -> None:
    """Run the child's cutover, wait for ``until()`` (a state it reaches at ``point``), kill -9 it."""
    env = {**os.environ, "REPLICATOR_CUTOVER_PAUSE_AT": point, "REPLICATOR_CUTOVER_PAUSE_S": "30"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(root=ROOT), str(db)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    assert callable(until)
    while not until():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"the cutover never reached {point}"
        time.sleep(0.01)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "memory.db"
    writer = MemoryWriter.create(db)
    writer.create_entity("alice", "person", ["likes tea"])
    writer.close()
    install(db)
    (tmp_path / "caxton.yaml").write_text(CAXTON)
    return db


@pytest.mark.parametrize(
    ("point", "refusing", "switched"),
    [("switch", False, False), ("switch-refusing", True, False), ("switch-config-written", True, True)],
)
def test_a_crash_in_the_switch_step_never_leaves_the_store_writable_under_a_switched_config(
    store: Path, point: str, refusing: bool, switched: bool
) -> None:
    cfg = store.parent / "caxton.yaml"
    reached = {
        "switch": lambda: state.load(store).step == "switch",
        "switch-refusing": lambda: not _takes_writes(store),
        "switch-config-written": lambda: config.read_backend(cfg) == "neo4j",
    }
    _kill_at(store, point, reached[point])

    backend = config.read_backend(cfg)
    assert not (backend != "embedded" and _takes_writes(store)), "split brain: caxton.yaml says neo4j, store writable"
    assert (backend == "neo4j", not _takes_writes(store)) == (switched, refusing)
    assert "interrupted at step 5 (switch)" in state.load(store).describe()

    asked: list[str] = []

    def compare(target: str) -> list[str]:
        asked.append(target)
        return []

    rollback.rollback(store, None, divergence=compare)
    assert asked == (["neo4j"] if switched else [])  # compared exactly when the runtime may have written
    assert cfg.read_text() == CAXTON
    assert _takes_writes(store)
    MemoryWriter(store).create_entity("after-rollback", "person")


def test_rollback_of_a_crash_after_the_config_switch_compares_before_discarding(store: Path) -> None:
    cfg = store.parent / "caxton.yaml"
    _kill_at(store, "switch-config-written", lambda: config.read_backend(cfg) == "neo4j")

    def diverged(target: str) -> list[str]:
        return ["neo4j entity 77: extra"]  # the runtime already wrote to Neo4j

    with pytest.raises(rollback.RollbackRefused, match="neo4j entity 77: extra"):
        rollback.rollback(store, None, divergence=diverged)
    assert config.read_backend(cfg) == "neo4j" and not _takes_writes(store)  # nothing changed


def test_a_stale_backup_is_never_restored_by_rollback(store: Path) -> None:
    cfg = store.parent / "caxton.yaml"
    stale = CAXTON.replace("port: 8080", "port: 9999").replace('backend: "embedded"', 'backend: "qdrant"')
    config.backup_path(cfg).write_text(stale)  # left by some earlier cutover
    state.save(store, state.load(store), state="cutting_over", step="drain", target="neo4j", pid=2**22 + 1,
               config=str(cfg))  # fmt: skip
    rollback.rollback(store, None, divergence=None)
    assert cfg.read_text() == CAXTON


def test_cutover_backs_up_the_config_as_it_is_now(store: Path) -> None:
    cfg = store.parent / "caxton.yaml"
    config.backup_path(cfg).write_text(CAXTON.replace("port: 8080", "port: 9999"))  # a stale backup
    report = cutover.run(cutover.CutoverPlan(db=store, config=cfg, target="neo4j"), [FakeTarget("neo4j", store)])
    assert report.ok, report.reason
    assert config.backup_path(cfg).read_text() == CAXTON
    rollback.rollback(store, None, divergence=None)
    assert cfg.read_text() == CAXTON  # not the stale backup's port 9999


def test_rollback_keeps_edits_made_to_the_config_since_the_cutover(store: Path) -> None:
    cfg = store.parent / "caxton.yaml"
    report = cutover.run(cutover.CutoverPlan(db=store, config=cfg, target="neo4j"), [FakeTarget("neo4j", store)])
    assert report.ok, report.reason
    cfg.write_text(cfg.read_text().replace("level: info", "level: debug"))  # the operator's edit
    rollback.rollback(store, None, divergence=None)
    assert cfg.read_text() == CAXTON.replace("level: info", "level: debug")


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0, 0.0, 1e400, 3601.0])
def test_max_pause_must_be_finite_positive_and_sane(tmp_path: Path, value: float) -> None:
    with pytest.raises(ConfigError, match="--max-pause"):
        cutover.CutoverPlan(db=tmp_path / "m.db", config=tmp_path / "c.yaml", target="neo4j", max_pause_s=value)


def test_a_pause_longer_than_writers_wait_is_warned(tmp_path: Path) -> None:
    plan = cutover.CutoverPlan(db=tmp_path / "m.db", config=tmp_path / "c.yaml", target="neo4j", max_pause_s=8)
    assert plan.writer_wait_s == 5.0
    assert any("database is locked" in w for w in plan.warnings())
    quick = cutover.CutoverPlan(db=tmp_path / "m.db", config=tmp_path / "c.yaml", target="neo4j", max_pause_s=3)
    assert quick.warnings() == []


class HangsWhenFenced(FakeTarget):
    """A sink whose destination stops answering once the cutover holds the fence (a hung Neo4j)."""

    def __init__(self, name: str, db: Path, where: str) -> None:
        super().__init__(name, db)
        self.where, self.calls = where, 0

    def position(self, timeout_s: float = 10.0) -> SinkPosition:
        self.calls += 1
        if self.where == "position" and state.load(self.db).step == "drain":
            time.sleep(8)  # far longer than the pause allowed
        return super().position(timeout_s)

    def quick_check(self, store: Path, sample: int, timeout_s: float = 10.0) -> list[str]:
        if self.where == "validate":
            time.sleep(8)
        return []


@pytest.mark.parametrize("where", ["position", "validate"])
def test_a_hung_destination_never_holds_the_writers_past_max_pause(store: Path, where: str) -> None:
    cfg = store.parent / "caxton.yaml"
    plan = cutover.CutoverPlan(db=store, config=cfg, target="neo4j", max_pause_s=1.0)
    waited: list[float] = []

    def writer() -> None:
        time.sleep(0.3)  # the fence is held by now
        started = time.monotonic()
        MemoryWriter(store, busy_timeout_ms=5000).create_entity("waits", "person")
        waited.append(time.monotonic() - started)

    thread = threading.Thread(target=writer)
    thread.start()
    started = time.monotonic()
    report = cutover.run(plan, [HangsWhenFenced("neo4j", store, where)])
    elapsed = time.monotonic() - started
    thread.join(10)
    assert not report.ok and report.aborted_at == ("drain" if where == "position" else "validate"), report
    assert report.pause_s is not None and report.pause_s <= 1.2, report.pause_s
    assert elapsed < 5, elapsed
    assert waited and waited[0] < 2, waited
    assert cfg.read_text() == CAXTON and _takes_writes(store)


def test_a_missing_store_is_named_and_records_nothing(tmp_path: Path) -> None:
    db = tmp_path / "missing" / "memory.db"
    (tmp_path / "caxton.yaml").write_text(CAXTON)
    with pytest.raises(CaptureError, match="no store at"):
        cutover.run(cutover.CutoverPlan(db=db, config=tmp_path / "caxton.yaml", target="neo4j"), [])
    assert not state.state_path(db).exists()


def test_an_unexpected_failure_is_recorded_never_left_as_a_running_cutover(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path, timeout_s: float) -> fence.Fence:
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(fence, "acquire", broken)
    cfg = store.parent / "caxton.yaml"
    with pytest.raises(RuntimeError):
        cutover.run(cutover.CutoverPlan(db=store, config=cfg, target="neo4j"), [FakeTarget("neo4j", store)])
    st = state.load(store)
    assert st.state == "aborted" and st.step == "fence" and st.pid is None, st
    assert "something nobody expected" in (st.reason or "")
    assert _takes_writes(store)


def test_an_unreadable_state_file_is_a_named_error(store: Path) -> None:
    state.state_path(store).write_text("{ not json")
    with pytest.raises(state.StateError, match="cannot read the migration state"):
        state.load(store)


def test_the_state_file_is_written_durably(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    state.save(store, state.load(store), state="aborted")
    assert len(synced) >= 2  # the file before the rename, its directory after


def test_a_neo4j_that_accepts_but_never_answers_is_named_within_the_preflight_bound(store: Path) -> None:
    """Seen: one position read against an unreachable Neo4j took 35 s. A socket that accepts and
    then says nothing (a hung server, a black-holing firewall) now costs the preflight's bound."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)
    port = hole.getsockname()[1]
    opts = PipelineConfig(db=store, workdir=store.parent).target_options()
    opts = dataclasses.replace(opts, neo4j=Neo4jSettings(uri=f"bolt://127.0.0.1:{port}", password="x" * 8))
    target = Neo4jTarget(opts)
    plan = cutover.CutoverPlan(db=store, config=store.parent / "caxton.yaml", target="neo4j", preflight_timeout_s=1.5)
    started = time.monotonic()
    try:
        report = cutover.run(plan, [target])
    finally:
        target.close()
        hole.close()
    assert time.monotonic() - started < 5
    assert not report.ok and report.aborted_at == "preflight"
    assert "cannot read its position" in (report.reason or "") and "did not answer within 1.50s" in (
        report.reason or ""
    )
    assert state.load(store).state == "aborted"


class Flaky(FakeTarget):
    """A caught-up sink that cannot be read while ``broken`` exists (a sink restarting)."""

    def __init__(self, name: str, db: Path, broken: Path) -> None:
        super().__init__(name, db)
        self.broken = broken

    def position(self, timeout_s: float = 10.0) -> SinkPosition:
        if self.broken.exists():
            raise ConnectionRefusedError("the sink is restarting")
        return super().position(timeout_s)


def test_a_postponed_cutover_judges_at_the_go_not_while_it_waits(store: Path) -> None:
    flag, broken = store.parent / "postpone", store.parent / "broken"
    flag.touch()
    plan = cutover.CutoverPlan(db=store, config=store.parent / "caxton.yaml", target="neo4j", postpone_flag=flag)
    reports: list[cutover.CutoverReport] = []
    worker = threading.Thread(target=lambda: reports.append(cutover.run(plan, [Flaky("neo4j", store, broken)])))
    worker.start()
    deadline = time.monotonic() + 20
    while state.load(store).step != "preflight" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # ready, postponed
    broken.touch()  # the sink restarts while the operator has not given the go yet
    time.sleep(1.5)
    broken.unlink()
    flag.unlink()  # the go
    worker.join(20)
    assert reports and reports[0].ok, reports[0].reason if reports else "no report"
