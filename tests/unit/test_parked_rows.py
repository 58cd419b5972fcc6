"""Parked rows (issue 17, item 3): the decision per row, the table next to the changelog, and retry."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from replicator.capture import parked
from replicator.capture.install import install, uninstall
from replicator.capture.storefile import open_store, write_transaction
from replicator.capture.triggers import CHANGELOG, head_seq
from replicator.cutover import config, cutover, preflight
from replicator.position import Heartbeat, PartitionKey, SinkPosition
from replicator.source.convert import ChangelogRow, Conversion, Message, Unfit
from replicator.source.parking import Verdict, judge, message_bytes, take
from replicator.source.store import StoreReader, state_size
from replicator.testing.writer import MemoryWriter

WHY = parked.Why("its event is 9 bytes, over the limit of 8 bytes", 9, 8)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "memory.db"
    MemoryWriter.create(path).close()
    install(path)
    yield path


def _row(seq: int, size: int) -> ChangelogRow:
    return ChangelogRow(seq, "entities", "u", seq, 0, None, "x" * size)


def _verdict(row: ChangelogRow) -> Verdict:
    size = len(row.after or "")
    if size > 100:
        return Verdict(None, size, "too large")
    message = Message("t", b"k", b"v" * size, [])
    return Verdict(Conversion([message]), size, None)


def test_a_row_too_large_is_passed_over_once_parked_and_the_rest_is_taken() -> None:
    parked_seqs: list[int] = []

    def park(row: ChangelogRow, _verdict: Verdict) -> bool:
        parked_seqs.append(row.seq)
        return True

    taken = take([_row(1, 10), _row(2, 500), _row(3, 10)], _verdict, park, 1000)
    assert [r.seq for r in taken.rows] == [1, 2, 3]
    assert parked_seqs == [2]
    assert taken.parked == 1 and len(taken.messages) == 2


def test_a_row_that_cannot_be_parked_yet_ends_the_transaction_before_it() -> None:
    taken = take([_row(1, 10), _row(2, 500), _row(3, 10)], _verdict, lambda _r, _v: False, 1000)
    assert [r.seq for r in taken.rows] == [1], "row 2 is decided again at the next poll, never skipped"


def test_a_transaction_stops_at_its_byte_budget_but_always_takes_one_row() -> None:
    taken = take([_row(1, 60), _row(2, 60), _row(3, 60)], _verdict, lambda _r, _v: True, 100)
    assert [r.seq for r in taken.rows] == [1]


def test_judge_names_the_size_and_the_limit_and_turns_conversion_errors_into_reasons() -> None:
    message = Message("t", b"key", b"v" * 100, [("h", b"12")])
    assert message_bytes([message]) == 3 + 100 + 3
    verdict = judge(lambda: Conversion([message]), 50, 1000)
    assert verdict.conversion is None and verdict.size == 106
    assert "106 bytes, over the limit of 50 bytes" in str(verdict.reason)

    def unfit() -> Conversion:
        raise Unfit("entities id 5: name holds TEXT that is not valid UTF-8")

    assert judge(unfit, 50, 1000).reason == "entities id 5: name holds TEXT that is not valid UTF-8"

    def broken() -> Conversion:
        raise KeyError("id")

    assert "cannot be converted (KeyError" in str(judge(broken, 50, 1000).reason)


def _park(path: Path, seq: int) -> None:
    conn = open_store(path)
    with write_transaction(conn, path, 5):
        parked.park_change(conn, seq, WHY)
    conn.close()


def test_a_parked_change_is_kept_with_its_reason_once_and_listed(store: Path) -> None:
    writer = MemoryWriter(store)
    entity = writer.create_entity("a", "t", ["x"])
    writer.close()
    conn = open_store(store)
    seq = int(conn.execute(f"SELECT max(seq) FROM {CHANGELOG}").fetchone()[0])
    conn.close()
    _park(store, seq)
    _park(store, seq)  # a crash before the Kafka commit parks it again: still one row
    conn = open_store(store, readonly=True)
    [row] = parked.list_parked(conn)
    assert (row.seq, row.table, row.op, row.row_id, row.size_bytes, row.limit_bytes) == (
        seq, "entities", "c", entity, 9, 8,
    )  # fmt: skip
    assert row.reason == WHY.reason and parked.count_parked(conn) == 1
    conn.close()


def test_retry_requeues_the_current_state_or_a_delete_as_new_changelog_rows(store: Path) -> None:
    writer = MemoryWriter(store)
    kept = writer.create_entity("kept", "t", ["one"])
    gone = writer.create_entity("gone", "t", ["two"])
    writer.close()
    _park(store, 2)  # kept's create (seq 1 is reserved for the snapshot)
    _park(store, 3)  # gone's create
    writer = MemoryWriter(store)
    writer.add_observations(kept, ["later, and fits"])
    writer.delete_entity(gone)
    writer.close()
    conn = open_store(store)
    head = int(conn.execute(f"SELECT max(seq) FROM {CHANGELOG}").fetchone()[0])
    with write_transaction(conn, store, 5):
        done = parked.retry(conn, {"entities": ("id", "name", "entity_type", "observations", "confidence",
                                                "strength", "version", "created_at", "updated_at", "valid_from",
                                                "valid_to", "metadata")}, None)  # fmt: skip
    assert [(p.row_id, seq) for p, seq in done] == [(kept, head + 1), (gone, head + 2)]
    rows = {
        r[0]: r[1:]
        for r in conn.execute(f"SELECT row_id, op, before, after FROM {CHANGELOG} WHERE seq > ?", (head,)).fetchall()
    }
    op, before, after = rows[kept]
    assert op == "u" and before == after and json.loads(after)["observations"] == '["one", "later, and fits"]'
    op, before, after = rows[gone]
    assert op == "d" and after is None and before is None  # parked without an image: the key names it
    assert parked.count_parked(conn) == 0
    assert [p.retried_seq for p in parked.list_parked(conn, include_retried=True)] == [head + 1, head + 2]
    conn.close()


def test_changes_parked_after_the_committed_position_are_decided_again(store: Path) -> None:
    writer = MemoryWriter(store)
    for name in "abc":
        writer.create_entity(name, "t", [])
    writer.close()
    for seq in (2, 3, 4):
        _park(store, seq)
    reader = StoreReader(store)
    assert reader.unpark_uncommitted(3, 1000)
    assert [p.seq for p in parked.list_parked(reader.conn)] == [2, 3]
    reader.close()


def test_uninstall_counts_parked_rows_as_discarded_and_removes_the_table(store: Path) -> None:
    writer = MemoryWriter(store)
    writer.create_entity("a", "t", [])
    writer.close()
    _park(store, 2)
    conn = open_store(store)
    conn.execute(f"DELETE FROM {CHANGELOG}")
    conn.close()
    assert uninstall(store) == 1
    conn = sqlite3.connect(store)
    # Only the store's identity stays (kept for a later install: docs/capture.md); the parked rows go.
    assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '_replicator%'").fetchall() == [
        ("_replicator_meta",)
    ]
    conn.close()


def test_the_changelog_and_snapshot_reads_stop_at_their_byte_budget(store: Path) -> None:
    writer = MemoryWriter(store)
    for name in "abcd":
        writer.create_entity(name, "t", ["x" * 1000])
    writer.close()
    reader = StoreReader(store)
    everything = reader.changelog_after(0, 100)
    assert len(everything) == 4
    one_state = state_size(everything[0].after)  # read by columns
    assert one_state > 1000
    assert len(reader.changelog_after(0, 100, max_bytes=one_state + 1)) == 2
    one_image = len(reader.image_of("entities", everything[0].row_id) or "")
    assert len(reader.changelog_after(0, 100, max_bytes=1)) == 1, "always one row, whatever its size"
    columns = ("id", "name", "entity_type", "observations", "confidence", "strength", "version", "created_at",
               "updated_at", "valid_from", "valid_to", "metadata")  # fmt: skip
    assert len(reader.snapshot_chunk("entities", columns, 0, 100, max_bytes=one_image + 1)) == 2
    reader.close()


def test_text_that_is_not_utf8_is_read_without_raising(store: Path) -> None:
    conn = sqlite3.connect(store)
    conn.execute(
        "INSERT INTO entities (name, entity_type, observations, created_at, updated_at) "
        "VALUES (CAST(x'61ff62' AS TEXT), 't', '[]', 1, 1)"
    )
    conn.commit()
    conn.close()
    reader = StoreReader(store)
    [row] = reader.changelog_after(0, 10)
    assert isinstance(row.after, dict) and row.after["name"] == "a\udcffb"
    reader.close()


class _Target:
    """A caught-up sink (watermark = the store's head) that parks changelog seq ``park`` when its
    position is read the second time: in the preflight after the pre-check, after that preflight's
    own look at the parked rows, so only the check under the fence can see it."""

    def __init__(self, db: Path, park: int | None) -> None:
        self.name, self.db, self.park, self.reads = "neo4j", db, park, 0

    def position(self, timeout_s: float) -> SinkPosition | None:
        self.reads += 1
        if self.park is not None and self.reads == 2:
            _park(self.db, self.park)
            self.park = None
        seq = head_seq(sqlite3.connect(self.db))
        now = time.time_ns() // 1_000_000
        return SinkPosition(self.name, {}, {PartitionKey("t", 0): Heartbeat(seq, now)}, {"t": 1}, seq, now)

    def precheck(self, store: Path) -> list[str]:
        return []

    def quick_check(self, store: Path, sample: int, timeout_s: float) -> list[str]:
        return []


def test_cutover_refuses_while_rows_are_parked_at_preflight_and_under_the_fence(store: Path) -> None:
    writer = MemoryWriter(store)
    writer.create_entity("a", "t", [])
    writer.create_entity("b", "t", [])
    writer.close()
    cfg = store.parent / "caxton.yaml"
    cfg.write_text(config.sample_config())
    plan = cutover.CutoverPlan(db=store, config=cfg, target="neo4j", max_pause_s=5)
    report = cutover.run(plan, [_Target(store, park=3)])  # parked after the preflights
    assert not report.ok and report.aborted_at == "validate", report.reason
    assert "1 change(s) are parked" in str(report.reason) and "entities id 2 (seq 3)" in str(report.reason)
    _park(store, 2)
    problems = preflight.preflight(plan, [_Target(store, park=None)])
    assert any("2 change(s) are parked" in p and "retry-parked" in p for p in problems), problems
    assert 'backend: "embedded"' in cfg.read_text()


def test_the_cutover_names_five_parked_changes_and_how_many_more(store: Path) -> None:
    writer = MemoryWriter(store)
    for n in range(7):
        writer.create_entity(f"e{n}", "t", [])
    writer.close()
    conn = open_store(store)
    seqs = [int(r[0]) for r in conn.execute(f"SELECT seq FROM {CHANGELOG} WHERE tbl = 'entities' ORDER BY seq")]
    conn.close()
    for seq in seqs:
        _park(store, seq)
    [problem] = preflight.parked_problems(store)
    assert problem.startswith("7 change(s) are parked") and ", ... and 2 more; " in problem, problem
