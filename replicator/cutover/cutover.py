"""``replicator cutover``: preflight, fence, drain, validate, switch -- or abort having changed nothing.

The order is fail-safe: at no instant do both the store and the new backend take writes.

1. preflight: bounded reads (state, caxton.yaml, capture, positions), then the full pre-check (``precheck``),
   then the catch-up: the sinks within the pipeline's latency of the store (``preflight.catch_up``).
2. fence: the store's write lock; the runtime's writers *wait* from here.
3. drain: every sink's watermark reaches the store's head seq at the fence (the final seq).
4. validate: counts, the keys the pre-check left unsettled (and ``--sample`` entities), against the store (the same
   reads ran once before the fence, so the server has their plans).
5. switch: first the store durably refuses writes (refusal triggers, COMMIT with synchronous=FULL,
   which also releases the fence), then caxton.yaml's memory.backend is switched atomically.

The pause the writers see is the time the fence is held: steps 2 to the first half of 5. Every call
made under the fence gets what is left of ``--max-pause`` as its timeout and is abandoned when that
runs out (the cutover aborts and releases the writers): a hung server never holds the writers past
the pause. Every step is recorded in the migration state file before it starts, so a crash at any
instant is named by ``replicator status`` and resolved by ``replicator rollback``:

* before the refusal commits (steps 1-4 and the start of 5): the OS drops the dead process's lock,
  SQLite rolls the fence back; the store takes writes, caxton.yaml is unchanged;
* after the refusal, before caxton.yaml is written: the store refuses writes with "moved to X;
  reload caxton.yaml" while caxton.yaml still names the store (unavailable, never split);
* after caxton.yaml is written, before the state says cut_over: the runtime may already write to the
  new backend; rollback compares it with the store before it switches anything back.

Blocking; one cutover per store at a time.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

from replicator.capture.storefile import open_store
from replicator.cutover import config, fence, precheck, state
from replicator.cutover.budget import OutOfTime, within_each
from replicator.cutover.preflight import catch_up, parked_problems, preflight
from replicator.errors import ConfigError, Fatal, ReplicatorError
from replicator.position import SinkPosition

#: A pause beyond this is a typo, not a plan: the runtime's writers would fail long before it ends.
MAX_PAUSE_S: Final = 60.0
#: How long the runtime's writers wait for the store's lock (their busy timeout; STORE.md: "a writer
#: may use less, such as 5 s, and a fence must not outlast it").
WRITER_WAIT_S: Final = 5.0


class CutoverAborted(Fatal):
    """Cutover stopped before switching; the store and caxton.yaml are as they were."""


class Target(Protocol):
    """One destination as cutover sees it (Neo4j, Qdrant). Implementations are thin adapters; each
    call should give up after ``timeout_s`` (cutover also abandons it then)."""

    name: str

    def position(self, timeout_s: float) -> SinkPosition | None:
        """The sink's stored position (None if it never wrote one). Blocks up to ``timeout_s``; may raise."""

    def precheck(self, store: Path) -> list[str]:
        """Before the fence: the full comparison (``precheck``); why not to fence. Blocks; may raise."""

    def quick_check(self, store: Path, sample: int, timeout_s: float) -> list[str]:
        """Under the fence: counts, the pre-check's unsettled keys and a sample; the problems found."""


@dataclass(frozen=True)
class CutoverPlan:
    """What to cut over and the bounds. Raises ConfigError on construction for a bad value."""

    db: Path
    config: Path
    target: str  # neo4j | qdrant | hybrid
    max_pause_s: float = 3.0
    max_lag: int = 1000  # seq behind the store's head allowed at preflight
    stale_after_s: float = 15.0  # a sink whose position is older is not healthy
    lock_timeout_s: float = 2.0
    # Random entities compared again under the fence. The pre-check compared every one before it, and
    # the watermarks certify every change since: a sample only adds reads while the writers wait.
    sample: int = 0
    postpone_flag: Path | None = None
    writer_wait_s: float = WRITER_WAIT_S
    preflight_timeout_s: float = 10.0  # per read before the fence (a dead server is named, not waited on)
    catch_up_s: float = 10.0  # at most this long for the sinks to follow the writers closely before the fence

    def __post_init__(self) -> None:
        if self.target not in ("neo4j", "qdrant", "hybrid"):
            raise ConfigError(f"unknown cutover target {self.target!r}", hint="use neo4j, qdrant or hybrid")
        if not math.isfinite(self.max_pause_s) or self.max_pause_s <= 0:
            raise ConfigError(f"--max-pause {self.max_pause_s:g}s is not a positive duration", hint="e.g. 3s")
        if self.max_pause_s > MAX_PAUSE_S:
            raise ConfigError(
                f"--max-pause {self.max_pause_s:g}s is beyond {MAX_PAUSE_S:g}s: the runtime's writers would wait that "
                "long on the store",
                hint=f"keep it under what the writers wait (their busy timeout, {self.writer_wait_s:g}s), e.g. 3s",
            )
        if not math.isfinite(self.writer_wait_s) or self.writer_wait_s <= 0:
            raise ConfigError(f"--writer-wait {self.writer_wait_s:g}s is not a positive duration", hint="e.g. 5s")
        if self.max_lag < 0 or self.sample < 0:
            raise ConfigError("--max-lag and --sample must not be negative", hint="e.g. --max-lag 1000 --sample 10")

    def warnings(self) -> list[str]:
        """What is allowed but risky (printed before the cutover starts)."""
        if self.max_pause_s > self.writer_wait_s:
            return [
                f"--max-pause {self.max_pause_s:g}s exceeds what the runtime's writers wait for the store "
                f"({self.writer_wait_s:g}s, --writer-wait): a pause that long fails their writes with "
                "'database is locked' instead of making them wait"
            ]
        return []


@dataclass
class CutoverReport:
    target: str
    ok: bool
    final_seq: int | None = None
    pause_s: float | None = None
    steps_s: dict[str, float] = field(default_factory=dict)
    #: Each target's full comparison before the fence, seconds (they run at once: steps_s has the slowest).
    precheck_s: dict[str, float] = field(default_factory=dict)
    watermarks: dict[str, int | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    aborted_at: str | None = None
    reason: str | None = None
    config_backup: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def text(self) -> str:
        if not self.ok:
            return f"cutover to {self.target} ABORTED at {self.aborted_at}: {self.reason}\n  nothing was changed"
        lines = [
            f"cutover to {self.target}: done",
            f"  write pause   {self.pause_s * 1000:.0f} ms (store fenced -> refusing writes)"
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


class _Cutover:
    """One run of the five steps; each returns None to go on or the report of an abort."""

    def __init__(self, plan: CutoverPlan, targets: Sequence[Target], log: Callable[[str], None]) -> None:
        self.plan, self.targets, self.log = plan, targets, log
        self.report = CutoverReport(target=plan.target, ok=False, warnings=plan.warnings())
        previous = state.load(plan.db)
        self.st = state.MigrationState(history=previous.history)
        self.held: fence.Fence | None = None
        self.at_step = "preflight"
        self.switched_config = False

    def step(self, name: str) -> None:
        self.at_step = name
        state.save(self.plan.db, self.st, state="cutting_over", step=name, target=self.plan.target,
                   config=str(self.plan.config), pid=os.getpid(), reason=None,
                   final_seq=self.report.final_seq)  # fmt: skip
        self.log(f"step {state.STEPS.index(name) + 1}/5: {name}")
        _test_pause(name)

    def left(self, held: fence.Fence, reserve_s: float = 0.0) -> float:
        """Seconds of the pause left for the next call, keeping ``reserve_s`` for what follows it."""
        return held.acquired_at + self.plan.max_pause_s - reserve_s - time.monotonic()

    def abort(self, at: str, reason: str) -> CutoverReport:
        if self.held is not None:
            self.held.release()
            self.report.pause_s = self.held.held_s
        self.report.aborted_at, self.report.reason = at, reason
        state.save(self.plan.db, self.st, state="aborted", step=at, reason=reason, pid=None)
        return self.report

    def fail(self, exc: BaseException) -> None:
        """An unexpected exception (or an interrupt): never leave the writers fenced, and record it so
        that ``status`` names it instead of showing a cutover in progress with a dead pid."""
        if self.held is not None:
            self.held.release()
        reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        if not self.switched_config and self.at_step != "switch":
            state.save(self.plan.db, self.st, state="aborted", step=self.at_step, reason=reason, pid=None)
        else:  # the store may refuse writes, caxton.yaml may be switched: rollback resolves it
            state.save(self.plan.db, self.st, state="failed", step=self.at_step, reason=reason, pid=None)

    def preflight(self) -> CutoverReport | None:
        started = time.monotonic()
        self.step("preflight")
        problems = preflight(self.plan, self.targets)
        flag = self.plan.postpone_flag
        if not problems and flag is not None and flag.exists():
            # Ready: wait for the go. What changes meanwhile (a sink restarting, a burst of lag) is
            # judged at the go, by the preflight that decides, not by one taken while waiting.
            self.log(f"ready; postponed while {flag} exists")
            while flag.exists():
                time.sleep(0.2)
            problems = preflight(self.plan, self.targets)
        self.report.steps_s["preflight"] = time.monotonic() - started
        if not problems:  # the full comparison, while the writers run: the pause keeps only the rest
            run = precheck.run_all(self.plan.db, self.targets)
            problems, self.report.steps_s["precheck"], self.report.precheck_s = run.problems, run.seconds, run.by_target
            problems = problems or preflight(self.plan, self.targets)  # a sink may have fallen behind meanwhile
        if problems:
            self.report.problems = problems
            return self.abort("preflight", "; ".join(problems))
        caught = catch_up(self.plan.db, self.targets, self.plan.catch_up_s)
        self.report.steps_s["catch_up"] = caught.seconds
        if not caught.settled:  # fenced all the same: the drain is bounded by --max-pause
            self.log(f"the sinks did not come within a moment of the store in {self.plan.catch_up_s:g}s "
                     f"({caught.rounds} rounds); fencing all the same")  # fmt: skip
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
        reserve = min(0.3 * self.plan.max_pause_s, 0.5)  # room for validation and the switch
        pending = {target.name: target for target in self.targets}
        while pending:
            budget = self.left(held, reserve)
            reads = {name: functools.partial(target.position, budget) for name, target in pending.items()}
            for name, position in within_each(reads, budget, "position").items():
                if isinstance(position, OutOfTime):
                    continue
                if isinstance(position, BaseException):
                    return self.abort("drain", f"{name}: cannot read its position: {position}")
                watermark = position.watermark() if position else None
                self.report.watermarks[name] = watermark.seq if watermark else None
                if watermark is not None and watermark.seq >= held.final_seq:
                    del pending[name]
            if pending and self.left(held, reserve) <= 0:
                behind = ", ".join(f"{n} at {self.report.watermarks.get(n)}" for n in pending)
                late = f"not drained to seq {held.final_seq} within --max-pause {self.plan.max_pause_s:g}s ({behind})"
                return self.abort("drain", late)
            if pending:
                time.sleep(0.01)
        self.report.steps_s["drain"] = time.monotonic() - started
        return None

    def validate(self, held: fence.Fence) -> CutoverReport | None:
        self.step("validate")
        started = time.monotonic()
        self.report.problems.extend(parked_problems(self.plan.db))
        budget = self.left(held, min(0.1 * self.plan.max_pause_s, 0.2))  # keep the refusal's commit
        db, sample = self.plan.db, self.plan.sample
        checks = {t.name: functools.partial(t.quick_check, db, sample, budget) for t in self.targets}
        for name, found in within_each(checks, budget, "validation").items():
            if isinstance(found, OutOfTime):
                return self.abort("validate", f"{found}: the pause would exceed --max-pause {self.plan.max_pause_s:g}s")
            if isinstance(found, BaseException):
                self.report.problems.append(f"{name}: validation failed to run: {found}")
            else:
                self.report.problems.extend(found)
        if self.report.problems:
            return self.abort("validate", "; ".join(self.report.problems[:5]))
        self.report.steps_s["validate"] = time.monotonic() - started
        return None

    def switch(self, held: fence.Fence) -> CutoverReport:
        self.step("switch")
        started = time.monotonic()
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:  # 1. durable refusal (releases the fence): from now on the store takes no write
            held.refuse_writes_and_release(fence.refusal_message(self.plan.target, at))
        except Exception as exc:  # the fence was rolled back: the store takes writes, nothing changed
            return self.abort("switch", f"could not make the store refuse writes: {exc}")
        self.report.pause_s = held.held_s
        _test_pause("switch-refusing")
        try:  # 2. only then does the config name the new backend
            backup = config.switch_backend(self.plan.config, self.plan.target)
        except (ReplicatorError, OSError) as exc:
            fence.remove_refusal(self.plan.db)  # caxton.yaml still names the store: let it take writes again
            return self.abort("switch", f"could not switch {self.plan.config}: {exc}")
        self.switched_config = True
        _test_pause("switch-config-written")
        self.report.steps_s["switch"] = time.monotonic() - started
        self.report.config_backup = str(backup)
        self.report.ok = True
        state.save(self.plan.db, self.st, state="cut_over", step=None, final_seq=held.final_seq, pid=None)
        return self.report


def run(plan: CutoverPlan, targets: Sequence[Target], log: Callable[[str], None] = lambda _: None) -> CutoverReport:
    """Run the cutover. Blocks (up to --max-pause once fenced). Returns the report, ok or aborted
    with the step and reason; on abort the store takes writes and caxton.yaml is unchanged. Raises
    CaptureError (no store, not a store) before anything is recorded; any other exception is recorded
    in the state file (``status`` names it) and re-raised, never with the writers left fenced."""
    open_store(plan.db, readonly=True).close()  # a missing or foreign store: named, nothing recorded
    cutover = _Cutover(plan, targets, log)
    try:
        aborted = cutover.preflight() or cutover.take_fence()
        if aborted is not None:
            return aborted
        held = cutover.held
        assert held is not None
        try:
            return cutover.drain(held) or cutover.validate(held) or cutover.switch(held)
        finally:
            held.release()  # no-op after a successful switch; never leave writers waiting
    except BaseException as exc:
        cutover.fail(exc)
        raise


def resolution(st: state.MigrationState) -> str:
    """The one command that resolves ``st`` (for ``replicator status``)."""
    if st.state == "cutting_over" and not st.process_alive():
        return (
            "replicator rollback --db <db>   (the fence died with its process; if the switch step had begun, "
            "the store refuses writes and caxton.yaml may name the new backend: rollback compares, then undoes)"
        )
    if st.state == "failed":
        return "replicator rollback --db <db>   (undoes what the failed step changed), then fix the reason above"
    if st.state == "aborted":
        return "fix the reason above, then run the cutover again"
    if st.state == "cut_over":
        return "replicator rollback --db <db>   (to go back to the embedded store)"
    return ""
