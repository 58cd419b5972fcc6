"""Rollback with reverse replication, on a real store cut over with stand-in sinks and a stand-in
reverse stream (the real one: tests/integration/test_reverse.py): fence Neo4j, drain, switch back;
bounded by --max-pause with automatic abort; every step recorded, a crash at any one named."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from replicator.capture.install import install
from replicator.cli import cli
from replicator.cutover import rollback, state
from replicator.testing.writer import MemoryWriter
from tests.unit.test_cutover_fence import CAXTON, _cut_over, _still_cut_over


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "memory.db"
    writer = MemoryWriter.create(db)
    writer.create_entity("alice", "person", ["likes tea"])
    writer.close()
    install(db)
    (tmp_path / "caxton.yaml").write_text(CAXTON)
    return db


class FakeReverse:
    """Neo4j's changelog at ``head``; the store applies ``per_call`` seqs each time it is asked."""

    def __init__(self, head: int, applied: int = 0, per_call: int = 1, head_at_fence: int | None = None) -> None:
        self.head, self.applied_seq, self.per_call, self.head_at_fence = head, applied, per_call, head_at_fence
        self.calls: list[str] = []
        self.on = True
        self.applied_at_fence = -1
        self.parked: list[str] = []  # what set_aside() answers
        self.parked_at_fence: list[str] | None = None  # what it answers once fenced, when given

    def active(self) -> bool:
        return self.on

    def head_seq(self) -> int:
        return self.head

    def fence(self, message: str) -> int:
        self.calls.append(f"fence {message.split(' at ', maxsplit=1)[0]}")
        self.applied_at_fence = self.applied_seq
        self.head = self.head if self.head_at_fence is None else self.head_at_fence  # written while catching up
        return self.head

    def unfence(self) -> None:
        self.calls.append("unfence")

    def applied(self) -> int:
        self.applied_seq = min(self.head, self.applied_seq + self.per_call)
        return self.applied_seq

    def set_aside(self) -> list[str]:
        fenced = any(c.startswith("fence") for c in self.calls)
        return self.parked_at_fence if fenced and self.parked_at_fence is not None else self.parked

    def finish(self) -> None:
        self.calls.append("finish")
        self.on = False


def test_rollback_fences_neo4j_drains_the_store_then_switches_back_without_comparing(store: Path) -> None:
    cfg = _cut_over(store)
    reverse = FakeReverse(head=5)

    def never(target: str) -> list[str]:
        raise AssertionError("with the reverse stream drained there is nothing to compare")

    done = rollback.rollback(store, None, divergence=never, reverse=reverse, max_pause_s=5)
    assert reverse.calls == ["fence memory store moved back to embedded", "finish"]
    assert reverse.applied_seq == 5
    assert any("Neo4j fenced at changelog seq 5" in line for line in done)
    assert any(line.startswith("write pause") for line in done)
    assert cfg.read_text() == CAXTON
    MemoryWriter(store).create_entity("after-rollback", "person")
    steps = [h.get("step") for h in state.load(store).history if h.get("state") == "rolling_back" or "step" in h]
    assert [s for s in steps if s in state.ROLLBACK_STEPS] == ["fence_new_backend", "drain_reverse", "switch_back"]
    assert state.load(store).state == "rolled_back"


def test_neo4j_is_fenced_only_once_the_store_caught_up_with_its_changelog(store: Path) -> None:
    """The backlog the reverse process has when rollback starts is applied while Neo4j's writers still
    write; only what they write meanwhile falls inside the pause."""
    _cut_over(store)
    reverse = FakeReverse(head=5, applied=0, per_call=1)
    rollback.rollback(store, None, reverse=reverse, max_pause_s=5)
    assert reverse.applied_at_fence == 5, "Neo4j was fenced with the store still behind its changelog"


def test_a_reverse_stream_that_does_not_catch_up_is_refused_before_anything_is_fenced(store: Path) -> None:
    cfg = _cut_over(store)
    reverse = FakeReverse(head=5, applied=2, per_call=0)  # `reverse run` is not running
    with pytest.raises(rollback.RollbackAborted, match=r"up to seq 2 of 5.*--catch-up 0\.2s.*nothing was fenced"):
        rollback.rollback(store, None, reverse=reverse, max_pause_s=5, catch_up_s=0.2)
    assert reverse.calls == []
    _still_cut_over(store, cfg)


def _compare(target: str) -> list[str]:
    raise AssertionError("with the reverse stream drained there is nothing to compare")


DUPLICATE = "seq 7 entity 466: UNIQUE constraint failed: entities.name"


def test_a_change_neo4j_took_that_the_store_set_aside_refuses_the_rollback_before_anything_is_fenced(
    store: Path,
) -> None:
    """Two Neo4j entities with one name: the store holds one, the other is set aside. Going back
    would lose it, so rollback names it and changes nothing."""
    cfg = _cut_over(store)
    reverse = FakeReverse(head=5)
    reverse.parked = [DUPLICATE]
    with pytest.raises(rollback.RollbackRefused, match=r"(?s)1 change\(s\) Neo4j took are set aside.*entity 466.*"
                       r"nothing was fenced") as refused:  # fmt: skip
        rollback.rollback(store, None, divergence=_compare, reverse=reverse, max_pause_s=5)
    assert (
        "rename or merge one of the two, or delete one" in refused.value.hint
        and "--discard-new-writes" in refused.value.hint
    )
    assert reverse.calls == []
    _still_cut_over(store, cfg)


def test_a_change_set_aside_during_the_drain_lifts_the_fence_and_refuses(store: Path) -> None:
    cfg = _cut_over(store)
    reverse = FakeReverse(head=5)
    reverse.parked_at_fence = [DUPLICATE]
    with pytest.raises(rollback.RollbackRefused, match=r"entity 466.*\nNeo4j takes writes again and nothing changed"):
        rollback.rollback(store, None, divergence=_compare, reverse=reverse, max_pause_s=5)
    assert reverse.calls == ["fence memory store moved back to embedded", "unfence"]
    _still_cut_over(store, cfg)


def test_discard_new_writes_rolls_back_and_names_what_the_store_set_aside_as_lost(store: Path) -> None:
    _cut_over(store)
    reverse = FakeReverse(head=5)
    reverse.parked = [DUPLICATE]
    done = rollback.rollback(store, None, divergence=None, reverse=reverse, max_pause_s=5)
    assert f"lost (--discard-new-writes): 1 change(s) Neo4j took that the store set aside: {DUPLICATE}" in done
    assert state.load(store).state == "rolled_back"


def test_a_reverse_stream_that_does_not_drain_within_max_pause_aborts_and_changes_nothing(store: Path) -> None:
    cfg = _cut_over(store)
    reverse = FakeReverse(head=3, head_at_fence=10**9)
    with pytest.raises(rollback.RollbackAborted, match=r"within --max-pause 0\.2s"):
        rollback.rollback(store, None, reverse=reverse, max_pause_s=0.2)
    assert reverse.calls == ["fence memory store moved back to embedded", "unfence"]
    _still_cut_over(store, cfg)


def test_a_crash_during_the_drain_is_named_and_rollback_runs_again(store: Path) -> None:
    cfg = _cut_over(store)
    st = state.load(store)
    state.save(store, st, state="rolling_back", step="drain_reverse", pid=2**22 + 12345)  # a dead process
    assert state.load(store).describe() == (
        f"rollback from neo4j interrupted at step 2 (drain_reverse); its process {2**22 + 12345} is gone"
    )
    assert rollback.resolution(state.load(store)).startswith("replicator rollback --db <db>")
    with pytest.raises(sqlite3.DatabaseError, match="moved to neo4j"):
        MemoryWriter(store).create_entity("unavailable, never split", "person")
    rollback.rollback(store, None, reverse=FakeReverse(head=3), max_pause_s=5)
    assert cfg.read_text() == CAXTON and state.load(store).state == "rolled_back"
    MemoryWriter(store).create_entity("after-rollback", "person")


def test_a_crash_after_capture_was_turned_off_finishes_the_drained_rollback_without_comparing(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollback drained Neo4j into the store, switched caxton.yaml back, lifted the store's refusal and
    turned Neo4j's capture off, then died before recording it. The runtime writes to the store again, so
    the store now differs from Neo4j: running rollback again must finish what was drained, not compare
    and refuse as if Neo4j had taken writes the store lacks."""
    cfg = _cut_over(store)
    reverse = FakeReverse(head=4)

    def crash_after_finish(db: Path, st: state.MigrationState, **fields: Any) -> state.MigrationState:
        if fields.get("state") == "rolled_back":
            raise KeyboardInterrupt("killed after capture off, before the state was saved")
        return saved(db, st, **fields)

    saved = state.save
    with monkeypatch.context() as patch:
        patch.setattr(state, "save", crash_after_finish)
        with pytest.raises(KeyboardInterrupt):
            rollback.rollback(store, None, reverse=reverse, max_pause_s=5)
    st = state.load(store)
    assert (st.state, st.step, reverse.on) == ("rolling_back", "switch_back", False)
    state.save(store, st, pid=2**22 + 12345)  # its process is gone
    MemoryWriter(store).create_entity("written by the runtime after the switch back", "person")

    def differs(target: str) -> list[str]:
        return ["neo4j: entity 2 missing (the store has it)"]

    done = rollback.rollback(store, None, divergence=differs, reverse=reverse, max_pause_s=5)
    after = state.load(store)
    assert (after.state, after.rolled_back_by, after.reverse_seq) == ("rolled_back", "drain_reverse", 4), done
    assert cfg.read_text() == CAXTON
    MemoryWriter(store).create_entity("after-rollback", "person")


def test_an_unreachable_neo4j_refuses_the_rollback_by_name_and_changes_nothing(store: Path) -> None:
    cfg = _cut_over(store)
    reverse = FakeReverse(head=3)

    def down() -> bool:
        raise ConnectionRefusedError("Connection refused")

    reverse.active = down  # type: ignore[method-assign]
    with pytest.raises(rollback.RollbackRefused, match="cannot reach Neo4j to drain its writes back"):
        rollback.rollback(store, None, reverse=reverse)
    _still_cut_over(store, cfg)


def _status_json(store: Path) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["status", "--db", str(store), "--json"])
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.output)
    return parsed


def test_status_json_names_how_a_rollback_resolved_the_cutover(store: Path) -> None:
    _cut_over(store)
    before = time.time_ns() // 1_000_000
    rollback.rollback(store, None, reverse=FakeReverse(head=7), max_pause_s=5)
    shown = _status_json(store)
    resolved = shown["rollback"]
    assert resolved["by"] == "drain_reverse" and resolved["reverse_drained_to_seq"] == 7, resolved
    assert resolved["from"].startswith("cut over to neo4j at seq") and resolved["at_ms"] >= before, resolved
    assert resolved["at"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(before / 1000))), resolved
    assert shown["describe"].startswith("rolled back from neo4j at ") and "seq 7" in shown["describe"], shown


def test_status_json_names_a_rollback_that_compared_the_destinations(store: Path) -> None:
    _cut_over(store)
    rollback.rollback(store, None, divergence=lambda target: [])
    resolved = _status_json(store)["rollback"]
    assert resolved["by"] == "compare" and resolved["reverse_drained_to_seq"] is None, resolved


def test_status_json_names_the_fix_for_an_interrupted_rollback(store: Path) -> None:
    _cut_over(store)
    state.save(store, state.load(store), state="rolling_back", step="drain_reverse", pid=2**22 + 12345)
    shown = _status_json(store)
    assert "interrupted at step 2 (drain_reverse)" in shown["describe"]
    assert shown["resolve"].startswith("replicator rollback --db"), shown
    assert shown["rollback"] is None, shown


def test_neo4j_lost_while_catching_up_refuses_by_name_before_anything_is_fenced(store: Path) -> None:
    cfg = _cut_over(store)
    reverse = FakeReverse(head=3)

    def down() -> int:
        raise ConnectionRefusedError("Connection refused")

    reverse.head_seq = down  # type: ignore[method-assign]
    with pytest.raises(rollback.RollbackRefused, match="cannot reach Neo4j to drain its writes back"):
        rollback.rollback(store, None, reverse=reverse)
    assert reverse.calls == []
    _still_cut_over(store, cfg)
