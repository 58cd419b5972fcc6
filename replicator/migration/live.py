"""``replicator migrate`` (strategy live): the hot migration of a store that keeps taking writes.

Steps, each recorded in the migration's history:

1. **install**: capture (triggers + changelog) into the store (``source install``; idempotent).
2. **start**: the source and the configured sinks as child daemons, all with the same ``--config``
   (or attached to ones already answering on their configured health ports).
3. **catch-up**: ``replicator lag`` until every sink has a watermark within ``cutover.max_lag`` of the
   store's head, shown per sink with its drain estimate; before it, while the source snapshots, the
   snapshot's rows done / total and percentage (from the source's ``/metrics``: the source owns them).
4. **cutover**: after the go (postpone flag gone, confirmation), ``replicator cutover`` with the same
   file: preflight, fence, drain, validate, switch; its report is printed.

The daemons this command started are stopped (SIGTERM: drain and commit) whatever happens. Ctrl-C or
a crash before the cutover changes nothing in the store but capture; the cutover records its own
state (``replicator status`` names it, ``replicator rollback`` resolves it). A rerun resumes: capture
is already there, the daemons continue from their positions.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replicator.config import MigrationConfig
from replicator.errors import ReplicatorError
from replicator.migration import history
from replicator.migration.history import Migration, MigrationError
from replicator.migration.supervise import Child, answers, run_command, stop_all
from replicator.source.metrics import SnapshotProgress, read_snapshot_progress

Log = Callable[[str], None]
#: ``(label, done, total)``: a bar on a terminal, plain lines otherwise (migration/progress.py).
Show = Callable[[str, int, int], None]
SNAPSHOT_LABEL = "source snapshot rows"
#: A cutover that aborted because the sinks were not close enough (its preflight) or did not drain
#: within max_pause under the fence changed nothing: catch up again and retry, this many times in all.
ATTEMPTS = 3
RETRIED = ("preflight", "drain")


@dataclass(frozen=True)
class LivePlan:
    config_path: Path
    config: MigrationConfig
    db: Path
    caxton: Path
    catch_up_timeout_s: float = 3600.0
    #: How long a started daemon may take to answer on its health port (a sink imports torch and
    #: opens its destination first: seconds, more on a loaded machine).
    start_timeout_s: float = 300.0

    @property
    def logs(self) -> Path:
        return self.db.with_name(self.db.name + ".migration-logs")

    def common(self) -> list[str]:
        return ["--config", str(self.config_path)]


@dataclass
class LiveReport:
    migration_id: str
    target: str
    ok: bool = False
    cutover: dict[str, Any] = field(default_factory=dict)
    text: str = ""


class Live:
    """One run (or a resumed run) of the live steps."""

    def __init__(self, plan: LivePlan, migration: Migration, *, log: Log, wait_for_go: Callable[[], bool],
                 show: Show | None = None) -> None:  # fmt: skip
        self.plan, self.migration, self.log, self.wait_for_go = plan, migration, log, wait_for_go
        self.show: Show = show or (lambda label, done, total: None)
        self.children: list[Child] = []
        self.go_given = False
        self.launch: Callable[[str, list[str], Path, int | None], Child] = Child
        #: Where the source records its snapshot's progress (a test gives a fake).
        self.read_snapshot: Callable[[], SnapshotProgress | None] = self._source_snapshot
        self._snapshot_shown = False

    def step(self, name: str) -> None:
        history.record(self.plan.db, self.migration, name, pid=os.getpid())
        self.log(f"{name} ...")

    def run(self) -> LiveReport:
        """All steps. Blocks. Returns the report (the cutover's outcome). Raises MigrationError naming
        a daemon that stopped or a command that failed, or KeyboardInterrupt, recorded as ``failed``
        first. Every daemon it started is stopped before it returns or raises; an interrupt while
        they stop after the steps ended (stopped at once then) does not hide their outcome."""
        try:
            report = self._steps()
        finally:
            interrupt = stop_all(self.children)
        if interrupt is not None:
            self.log("  interrupted while the daemons stopped: stopped at once (their positions are stored)")
        return report

    def _steps(self) -> LiveReport:
        try:
            self.install()
            self.start()
            report = self._attempts()
        except BaseException as exc:
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
            history.record(self.plan.db, self.migration, None, state="failed", reason=reason, pid=None)
            raise
        state = "done" if report.ok else "aborted"
        history.record(self.plan.db, self.migration, state, state=state, reason=report.cutover.get("reason"),
                       pid=None)  # fmt: skip
        return report

    def _attempts(self) -> LiveReport:
        """Catch up and cut over; again (up to ATTEMPTS) when the cutover aborted for lag, having
        changed nothing."""
        for attempt in range(1, ATTEMPTS + 1):
            self.catch_up()
            report = self.cutover()
            if report.ok or report.cutover.get("aborted_at") not in RETRIED or attempt == ATTEMPTS:
                break
            self.log(f"  the cutover aborted at {report.cutover.get('aborted_at')} (writers released, nothing "
                     f"switched): catching up again, attempt {attempt + 1} of {ATTEMPTS}")  # fmt: skip
        return report

    def _command(self, argv: list[str], what: str, timeout_s: float = 600.0, answer: str = "") -> str:
        done = run_command([*argv, *self.plan.common(), "--db", str(self.plan.db)], timeout_s, answer)
        if done.returncode not in (0, 1):
            said = (done.stderr.strip().splitlines() or ["(no output)"])[-2:]
            raise MigrationError(f"{what} failed: {' '.join(said)}", hint="fix what it names, then run migrate again")
        return done.stdout

    def install(self) -> None:
        self.step("install")
        self._command(["source", "install"], "installing capture")

    def start(self) -> None:
        self.step("start")
        cfg, logs = self.plan.config, self.plan.logs
        wanted = [("source", ["source", "run", "--db", str(self.plan.db)], cfg.source.metrics_port)]
        if cfg.neo4j is not None:
            wanted.append(("neo4j", ["sink", "neo4j"], cfg.neo4j.metrics_port))
        if cfg.qdrant is not None:
            wanted.append(("qdrant", ["sink", "qdrant"], cfg.qdrant.metrics_port))
        for name, argv, port in wanted:
            child = self.launch(name, [*argv, *self.plan.common()], logs / f"{name}.log", port)
            child.start()
            self.children.append(child)
            self.log(f"  {name}: {'attached (already running)' if child.attached else f'started, log {child.log}'}")
        for child in self.children:
            self._await_ready(child)

    def _await_ready(self, child: Child) -> None:
        """Block until a started daemon answers on its health port: ``lag`` and the cutover ask the
        daemons (the Qdrant sink serves its local collection's position), and a sink takes seconds
        to import its libraries first. Raises MigrationError naming a daemon that exited meanwhile
        (with its log) or one that did not answer within ``start_timeout_s``."""
        if child.attached or child.port is None:
            return
        deadline = time.monotonic() + self.plan.start_timeout_s
        while not answers(child.port):
            self._check_children()
            self.show_snapshot()
            if time.monotonic() > deadline:
                raise MigrationError(
                    f"the {child.name} daemon did not answer on port {child.port} within "
                    f"{self.plan.start_timeout_s:g}s:\n{child.tail()}",
                    hint=f"see its log ({child.log}), fix what it names, then run migrate again",
                )
            time.sleep(0.2)

    def _check_children(self) -> None:
        for child in self.children:
            code = child.exited()
            if code is not None:
                raise MigrationError(f"the {child.name} daemon exited with {code}:\n{child.tail()}",
                                     hint=f"fix what its log names ({child.log}), then run migrate again")  # fmt: skip

    def catch_up(self) -> None:
        self.step("catch-up")
        deadline = time.monotonic() + self.plan.catch_up_timeout_s
        max_lag, pause_s = self.plan.config.cutover.max_lag, self.plan.config.cutover.max_pause_s
        while True:
            self._check_children()
            self.show_snapshot()
            out = self._command(["lag", "--json", "--interval", "1s"], "reading the lag", timeout_s=120)
            report = json.loads(out)
            sinks = report["sinks"]
            self.log(f"  head seq {report['source']['head_seq']:>7} | " + " | ".join(_lag_line(s) for s in sinks))
            if sinks and all(_caught_up(s, max_lag, pause_s) for s in sinks):
                self.show_snapshot()  # a small snapshot can open and finish between two looks: show it done
                return
            if time.monotonic() > deadline:
                raise MigrationError(f"the sinks did not catch up within {self.plan.catch_up_timeout_s:g}s",
                                     hint="see `replicator lag --config ...` and the daemons' logs")  # fmt: skip
            time.sleep(1.0)

    def _source_snapshot(self) -> SnapshotProgress | None:
        port = self.plan.config.source.metrics_port
        return None if port is None else read_snapshot_progress(port)

    def show_snapshot(self) -> None:
        """The source's snapshot, rows done / total, until it is shown complete (once). Nothing when
        the source has no endpoint (source.metrics_port) or streams without a snapshot in this run."""
        if self._snapshot_shown:
            return
        found = self.read_snapshot()
        if found is not None:
            self.show(SNAPSHOT_LABEL, found.done, found.total)
            self._snapshot_shown = found.done >= found.total

    def cutover(self) -> LiveReport:
        if not self.go_given and not self.wait_for_go():  # asked once, at the first time it is ready
            raise MigrationError("the operator did not confirm the cutover", hint="run migrate again when ready")
        self.go_given = True
        self.step("cutover")
        # cutover.confirm makes the cutover ask too: the go migrate just got is its answer.
        out = self._command(["cutover", "--caxton-config", str(self.plan.caxton), "--json"], "the cutover",
                            timeout_s=900, answer="y\n")  # fmt: skip
        data = json.loads(out)
        report = LiveReport(self.migration.id, self.migration.target, ok=bool(data.get("ok")), cutover=data)
        report.text = _text(report)
        return report


def _caught_up(sink: dict[str, Any], max_lag: int, max_pause_s: float) -> bool:
    """Close enough for the cutover's drain to fit in its pause: within ``max_lag`` seqs, applying
    (not stalled or stopped), and a watermark less than half the pause old (seconds behind is how long
    the drain under the fence would take at the rate it keeps up with)."""
    seconds = sink.get("lag_seconds")
    return (
        sink["lag_seq"] is not None and sink["lag_seq"] <= max_lag and sink["status"] not in ("STALL", "STOP")
        and seconds is not None and seconds <= max_pause_s / 2
    )  # fmt: skip


def _lag_line(sink: dict[str, Any]) -> str:
    seq = "-" if sink["lag_seq"] is None else str(sink["lag_seq"])
    eta = "" if sink.get("eta_s") in (None, 0) else f", drained in ~{sink['eta_s']:.0f}s"
    return f"{sink['sink']} {sink['status']:<5} lag {seq:>5} seq / {sink['lag_events']:>5} events{eta}"


def _text(report: LiveReport) -> str:
    data = report.cutover
    head = f"migration {report.migration_id} (live to {report.target})"
    if not report.ok:
        return f"{head}: cutover aborted at {data.get('aborted_at')}: {data.get('reason')}"
    pause = data.get("pause_s")
    lines = [f"{head}: done", f"  final seq     {data.get('final_seq')}"]
    if pause is not None:
        lines.append(f"  write pause   {pause * 1000:.0f} ms")
    lines.append(f"  caxton.yaml   memory.backend = {report.target} (backup {data.get('config_backup')})")
    return "\n".join(lines)


__all__ = ["Live", "LivePlan", "LiveReport", "ReplicatorError"]
