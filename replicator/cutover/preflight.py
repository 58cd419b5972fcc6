"""What cutover checks before it fences: the preflight's bounded reads, the changes the source parked,
and the catch-up that takes the fence only once every sink is within the pipeline's latency of the
store (the drain under the fence then waits for that latency alone, never for a backlog)."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from replicator.capture import parked
from replicator.capture.install import read_state
from replicator.capture.storefile import open_store
from replicator.capture.triggers import head_seq
from replicator.cutover import config, fence, state
from replicator.cutover.budget import OutOfTime, within, within_each
from replicator.errors import ReplicatorError, listed

if TYPE_CHECKING:
    from replicator.cutover.cutover import CutoverPlan, Target

#: A catch-up round this short means the sinks follow the writers at the pipeline's latency.
CAUGHT_UP_ROUND_S: Final = 0.25


def preflight(plan: CutoverPlan, targets: Sequence[Target]) -> list[str]:
    """Why the cutover must not start (empty: it may). Reads only; each read is bounded by
    ``plan.preflight_timeout_s``. Raises CaptureError when the store cannot be opened."""
    problems: list[str] = []
    current = state.load(plan.db)
    if current.state == "cut_over":
        problems.append(f"already cut over to {current.target}; `replicator rollback` first to cut over again")
    if current.state == "cutting_over" and current.pid != os.getpid() and current.process_alive():
        problems.append(f"a cutover is already running (pid {current.pid})")
    try:
        config.switched_text(config.read_text(plan.config), plan.config, "embedded")
    except ReplicatorError as exc:
        problems.append(f"caxton.yaml: {exc.message}")
    conn = open_store(plan.db, readonly=True)
    try:
        capture = read_state(conn)
        refusing = fence.refusal_installed(conn)
    finally:
        conn.close()
    problems += parked_problems(plan.db)
    if not capture.installed or capture.missing_triggers:
        problems.append("capture is not installed (or its triggers are missing): `replicator source install`")
    if refusing:
        problems.append("the store already refuses writes (a previous cutover): `replicator rollback` first")
    now_ms = time.time_ns() // 1_000_000
    timeout = plan.preflight_timeout_s
    for target in targets:
        try:
            position = within(functools.partial(target.position, timeout), timeout, f"{target.name}'s position")
        except Exception as exc:  # any failure to read is a reason to refuse, named
            problems.append(f"{target.name}: cannot read its position: {exc}")
            continue
        watermark = position.watermark() if position else None
        if position is None or watermark is None:
            problems.append(f"{target.name}: no watermark yet (is the sink running and the source publishing?)")
            continue
        age_s = (now_ms - position.updated_at_ms) / 1000
        if age_s > plan.stale_after_s:
            problems.append(f"{target.name}: last wrote its position {age_s:.0f}s ago (sink stopped or stalled)")
        behind = capture.head_seq - watermark.seq
        if behind > plan.max_lag:
            problems.append(f"{target.name}: {behind} changes behind the store (--max-lag {plan.max_lag})")
    return problems


def parked_problems(db: Path) -> list[str]:
    """Changes the source parked (capture/parked.py) never reached the destinations: a cutover now would
    lose them. Checked at preflight and again under the fence (one may be parked in between)."""
    conn = open_store(db, readonly=True)
    try:
        waiting = parked.list_parked(conn)
    finally:
        conn.close()
    if not waiting:
        return []
    named = listed([f"{p.table} id {p.row_id} (seq {p.seq})" for p in waiting], 5, ", ")
    return [
        f"{len(waiting)} change(s) are parked and missing from the destinations: {named}; "
        "`replicator source parked` says why, `replicator source retry-parked` sends them again"
    ]


@dataclass(frozen=True)
class CatchUp:
    """How the sinks followed the store before the fence: the last head seq they all reached (None:
    none within the time), the rounds taken, whether the last round was short (the sinks one pipeline
    latency behind) and the seconds."""

    reached: int | None
    rounds: int
    settled: bool
    seconds: float


def catch_up(db: Path, targets: Sequence[Target], timeout_s: float, poll_s: float = 0.01) -> CatchUp:
    """Before the fence, writers running: rounds of "read the store's head seq H, wait until every
    sink's watermark reaches H", until a round takes under CAUGHT_UP_ROUND_S (the sinks are then
    behind by what the writers wrote in one pipeline latency) or ``timeout_s`` passes (a sink that
    stalls for a moment -- a checkpoint, a collection -- gets more rounds, not a fence). Fencing after
    a backlog instead makes the writers wait for the sinks to apply it. Read-only; blocks up to
    ``timeout_s``; a failing read ends it (the drain names it)."""
    started = time.monotonic()
    deadline, reached, rounds, settled = started + timeout_s, None, 0, False
    while not settled and time.monotonic() < deadline:
        rounds += 1
        round_started = time.monotonic()
        conn = open_store(db, readonly=True)
        try:
            head = head_seq(conn)
        finally:
            conn.close()
        if not _wait_for(targets, head, deadline, poll_s):
            break
        reached = head
        settled = time.monotonic() - round_started < CAUGHT_UP_ROUND_S
    return CatchUp(reached, rounds, settled, time.monotonic() - started)


def _wait_for(targets: Sequence[Target], seq: int, deadline: float, poll_s: float) -> bool:
    """Whether every target's watermark reached ``seq`` before ``deadline``."""
    pending = {target.name: target for target in targets}
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        reads = {name: functools.partial(target.position, left) for name, target in pending.items()}
        for name, position in within_each(reads, left, "position").items():
            if isinstance(position, OutOfTime | BaseException):
                return False
            watermark = position.watermark() if position else None
            if watermark is not None and watermark.seq >= seq:
                del pending[name]
        if pending:
            time.sleep(poll_s)
    return True
