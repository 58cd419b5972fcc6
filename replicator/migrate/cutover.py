"""``replicator cutover``: preflight, fence, drain, validate, switch -- or abort having changed nothing.

The pause the runtime's writers see is the time the fence (the store's write lock) is held: from
step 2 to the end of step 5. Every step is recorded in the migration state file before it starts,
so a crash at any instant can be named by ``replicator status`` and resolved by ``replicator
rollback``. Blocking; one cutover per store at a time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from replicator.capture import parked
from replicator.capture.install import open_store, read_state
from replicator.errors import ReplicatorError
from replicator.migrate import config, fence, state
from replicator.position import SinkPosition


class CutoverAborted(ReplicatorError):
    """Cutover stopped before switching; the store and caxton.yaml are as they were."""


class Target(Protocol):
    """One destination as cutover sees it (Neo4j, Qdrant). Implementations are thin adapters."""

    name: str

    def position(self) -> SinkPosition | None:
        """The sink's stored position (None if it never wrote one). Blocks briefly; may raise."""
        ...

    def quick_check(self, store: Path, sample: int) -> list[str]:
        """Counts + a small sample against the store; returns the problems found (empty = OK)."""
        ...


@dataclass(frozen=True)
class CutoverPlan:
    db: Path
    config: Path
    target: str  # neo4j | qdrant | hybrid
    max_pause_s: float = 3.0
    max_lag: int = 1000  # seq behind the store's head allowed at preflight
    stale_after_s: float = 15.0  # a sink whose position is older is not healthy
    lock_timeout_s: float = 2.0
    sample: int = 10
    postpone_flag: Path | None = None

    def __post_init__(self) -> None:
        if self.target not in ("neo4j", "qdrant", "hybrid"):
            raise ReplicatorError(f"unknown cutover target {self.target!r}", hint="use neo4j, qdrant or hybrid")
        if self.max_pause_s <= 0:
            raise ReplicatorError("--max-pause must be positive", hint="e.g. --max-pause 3s")


@dataclass
class CutoverReport:
    target: str
    ok: bool
    final_seq: int | None = None
    pause_s: float | None = None
    steps_s: dict[str, float] = field(default_factory=dict)
    watermarks: dict[str, int | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    aborted_at: str | None = None
    reason: str | None = None
    config_backup: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def text(self) -> str:
        if not self.ok:
            return f"cutover to {self.target} ABORTED at {self.aborted_at}: {self.reason}\n  nothing was changed"
        lines = [
            f"cutover to {self.target}: done",
            f"  write pause   {self.pause_s * 1000:.0f} ms (store fenced -> refusing, config switched)"
            if self.pause_s is not None
            else "",
            f"  final seq     {self.final_seq}",
            *(f"  {name:<13} watermark {wm}" for name, wm in self.watermarks.items()),
            *(f"  {step:<13} {seconds * 1000:.0f} ms" for step, seconds in self.steps_s.items()),
            f"  config backup {self.config_backup}",
        ]
        return "\n".join(line for line in lines if line)


def _test_pause(step: str) -> None:
    """Fault injection for the crash tests: REPLICATOR_CUTOVER_PAUSE_AT=<step> sleeps there."""
    if os.environ.get("REPLICATOR_CUTOVER_PAUSE_AT") == step:
        time.sleep(float(os.environ.get("REPLICATOR_CUTOVER_PAUSE_S", "60")))


def preflight(plan: CutoverPlan, targets: Sequence[Target]) -> list[str]:
    """Why the cutover must not start (empty: it may). Reads only."""
    problems: list[str] = []
    current = state.load(plan.db)
    if current.state == "cut_over":
        problems.append(f"already cut over to {current.target}; `replicator rollback` first to cut over again")
    if current.state == "cutting_over" and current.process_alive() and current.pid != os.getpid():
        problems.append(f"a cutover is already running (pid {current.pid})")
    try:
        config.switched_text(plan.config.read_text(), plan.config, "embedded")
    except (OSError, ReplicatorError) as exc:
        problems.append(f"caxton.yaml: {exc}")
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
    for target in targets:
        try:
            position = target.position()
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
    named = ", ".join(f"{p.table} id {p.row_id} (seq {p.seq})" for p in waiting[:5])
    more = f" and {len(waiting) - 5} more" if len(waiting) > 5 else ""
    return [
        f"{len(waiting)} change(s) are parked and missing from the destinations: {named}{more}; "
        "`replicator source parked` says why, `replicator source retry-parked` sends them again"
    ]


class _Cutover:
    """One run of the five steps; each returns None to go on or the report of an abort."""

    def __init__(self, plan: CutoverPlan, targets: Sequence[Target], log: Callable[[str], None]) -> None:
        self.plan, self.targets, self.log = plan, targets, log
        self.report = CutoverReport(target=plan.target, ok=False)
        previous = state.load(plan.db)
        self.st = state.MigrationState(history=previous.history)
        self.held: fence.Fence | None = None

    def step(self, name: str) -> None:
        state.save(self.plan.db, self.st, state="cutting_over", step=name, target=self.plan.target,
                   config=str(self.plan.config), pid=os.getpid(), reason=None)  # fmt: skip
        self.log(f"step {state.STEPS.index(name) + 1}/5: {name}")
        _test_pause(name)

    def abort(self, at: str, reason: str) -> CutoverReport:
        if self.held is not None:
            self.held.release()
            self.report.pause_s = self.held.held_s
        self.report.aborted_at, self.report.reason = at, reason
        state.save(self.plan.db, self.st, state="aborted", step=at, reason=reason, pid=None)
        return self.report

    def preflight(self) -> CutoverReport | None:
        started = time.monotonic()
        self.step("preflight")
        problems = preflight(self.plan, self.targets)
        flag = self.plan.postpone_flag
        while not problems and flag is not None and flag.exists():
            self.log(f"ready; postponed while {flag} exists")
            time.sleep(0.5)
            problems = preflight(self.plan, self.targets)
        if problems:
            self.report.problems = problems
            return self.abort("preflight", "; ".join(problems))
        self.report.steps_s["preflight"] = time.monotonic() - started
        return None

    def take_fence(self) -> CutoverReport | None:
        self.step("fence")
        try:
            self.held = fence.acquire(self.plan.db, self.plan.lock_timeout_s)
        except ReplicatorError as exc:
            return self.abort("fence", str(exc))
        self.report.final_seq = self.held.final_seq
        self.report.steps_s["fence"] = time.monotonic() - self.held.acquired_at
        return None

    def drain(self, held: fence.Fence) -> CutoverReport | None:
        self.step("drain")
        started = time.monotonic()
        # Leave room for validation and the switch within --max-pause.
        deadline = held.acquired_at + self.plan.max_pause_s - min(0.3 * self.plan.max_pause_s, 0.5)
        pending = {target.name: target for target in self.targets}
        while pending:
            for name, target in list(pending.items()):
                try:
                    position = target.position()
                except Exception as exc:
                    return self.abort("drain", f"{name}: cannot read its position: {exc}")
                watermark = position.watermark() if position else None
                self.report.watermarks[name] = watermark.seq if watermark else None
                if watermark is not None and watermark.seq >= held.final_seq:
                    del pending[name]
            if pending and time.monotonic() > deadline:
                behind = ", ".join(f"{n} at {self.report.watermarks.get(n)}" for n in pending)
                return self.abort(
                    "drain",
                    f"not drained to seq {held.final_seq} within --max-pause {self.plan.max_pause_s:g}s ({behind})",
                )
            if pending:
                time.sleep(0.01)
        self.report.steps_s["drain"] = time.monotonic() - started
        return None

    def validate(self, held: fence.Fence) -> CutoverReport | None:
        self.step("validate")
        started = time.monotonic()
        self.report.problems.extend(parked_problems(self.plan.db))
        for target in self.targets:
            try:
                found = target.quick_check(self.plan.db, self.plan.sample)
            except Exception as exc:
                found = [f"{target.name}: validation failed to run: {exc}"]
            self.report.problems.extend(found)
        if self.report.problems:
            return self.abort("validate", "; ".join(self.report.problems[:5]))
        if time.monotonic() > held.acquired_at + self.plan.max_pause_s:
            return self.abort("validate", f"the pause would exceed --max-pause {self.plan.max_pause_s:g}s")
        self.report.steps_s["validate"] = time.monotonic() - started
        return None

    def switch(self, held: fence.Fence) -> CutoverReport:
        self.step("switch")
        started = time.monotonic()
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            backup = config.switch_backend(self.plan.config, self.plan.target)
        except ReplicatorError as exc:
            return self.abort("switch", str(exc))
        _test_pause("switch-config-written")
        try:
            held.refuse_writes_and_release(fence.refusal_message(self.plan.target, at))
        except Exception as exc:  # the store refused: undo the config switch
            config.restore_backup(self.plan.config)
            return self.abort("switch", f"could not make the store refuse writes: {exc}")
        self.report.steps_s["switch"] = time.monotonic() - started
        self.report.pause_s = held.held_s
        self.report.config_backup = str(backup)
        self.report.ok = True
        state.save(self.plan.db, self.st, state="cut_over", step=None, final_seq=held.final_seq, pid=None)
        return self.report


def run(plan: CutoverPlan, targets: Sequence[Target], log: Callable[[str], None] = lambda _: None) -> CutoverReport:
    """Run the cutover. Blocks (up to --max-pause once fenced). Returns the report, ok or aborted
    with the step and reason; on abort the store takes writes and caxton.yaml is unchanged."""
    cutover = _Cutover(plan, targets, log)
    aborted = cutover.preflight() or cutover.take_fence()
    if aborted is not None:
        return aborted
    held = cutover.held
    assert held is not None
    try:
        return cutover.drain(held) or cutover.validate(held) or cutover.switch(held)
    finally:
        held.release()  # no-op after a successful switch; never leave writers waiting


class RollbackRefused(ReplicatorError):
    """Rollback would lose writes the new backend took after the cutover (or could not rule it out)."""


#: Given the cutover's target (neo4j, qdrant, hybrid): every difference between the store and the
#: destination(s), one line each. Raises when a destination cannot be read.
Divergence = Callable[[str], list[str]]

_SHOWN: Final = 10


def rollback(db: Path, config_path: Path | None, *, divergence: Divergence | None = None) -> list[str]:
    """Undo a cutover (or resolve an interrupted one): the store takes writes again and caxton.yaml
    is restored from its backup. Idempotent. Returns what was done.

    After a completed cutover the runtime writes to the new backend, and the store has none of those
    writes: rolling back would silently drop them. So with ``divergence`` (the CLI's default) the
    destinations are first compared with the store in full, and any difference -- or a destination
    that cannot be read -- raises RollbackRefused, changing nothing. ``divergence=None`` is the
    operator's explicit choice to discard them (``--discard-new-writes``)."""
    st = state.load(db)
    if st.state == "cutting_over" and st.process_alive():
        raise ReplicatorError(f"a cutover is running (pid {st.pid})", hint="wait for it, or stop it first")
    if st.state == "cut_over" and divergence is not None:
        _refuse_if_diverged(st, divergence)
    done: list[str] = []
    if fence.remove_refusal(db):
        done.append("the store takes writes again (refusal triggers removed)")
    path = config_path or (Path(st.config) if st.config else None)
    if path is not None and config.restore_backup(path):
        done.append(f"{path} restored from its backup (memory.backend: {config.read_backend(path)})")
    state.save(db, st, state="rolled_back" if st.state != "replicating" else "replicating", step=None, pid=None)
    return done or ["nothing to undo"]


def _refuse_if_diverged(st: state.MigrationState, divergence: Divergence) -> None:
    target = st.target or "hybrid"
    discard = "--discard-new-writes"
    try:
        problems = divergence(target)
    except Exception as exc:  # any reason the check cannot run: the operator must decide, knowingly
        raise RollbackRefused(
            f"cannot check whether {target} took writes since the cutover at seq {st.final_seq}: {exc}",
            hint=f"make {target} reachable (same flags as the cutover), or pass {discard} to roll back "
            "anyway: writes made to it since the cutover are then lost",
        ) from exc
    if problems:
        shown = "\n  ".join(problems[:_SHOWN]) + (
            f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        )
        raise RollbackRefused(
            f"{target} differs from the store, which was cut over to it at seq {st.final_seq}:"
            f"\n  {shown}\nthe runtime has written to {target}; the store does not have those writes",
            hint=f"`replicator diff --target neo4j|qdrant --json` lists them; copy what must be kept into the "
            f"store, or pass {discard} to roll back and lose them",
        )


def resolution(st: state.MigrationState) -> str:
    """The one command that resolves ``st`` (for ``replicator status``)."""
    if st.state == "cutting_over" and not st.process_alive():
        return "replicator rollback --db <db>   (the fence died with its process; restores config if it was switched)"
    if st.state in ("aborted", "failed"):
        return "fix the reason above, then run the cutover again"
    if st.state == "cut_over":
        return "replicator rollback --db <db>   (to go back to the embedded store)"
    return ""


def report_dict(report: CutoverReport) -> dict[str, Any]:
    return asdict(report)
