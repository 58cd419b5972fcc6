"""The migration's state machine, persisted beside the store so that any crash can be named.

States: replicating -> cutting_over (step N) -> cut_over | aborted | failed; cut_over -> rolled_back.
Written atomically and durably (temp file, fsync, rename, fsync of the directory) at every
transition, with the pid of the process that owns a step in progress, so ``replicator status`` can
tell a running cutover from a dead one. Reading never raises a foreign exception: a file that cannot
be read or parsed is a StateError naming it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from replicator.errors import Fatal

STEPS: Final = ("preflight", "fence", "drain", "validate", "switch")
#: A rollback that drains the reverse stream records these steps (state rolling_back), as cutover does its own.
ROLLBACK_STEPS: Final = ("fence_new_backend", "drain_reverse", "switch_back")
#: How a rollback made sure the store has every write: Neo4j fenced and its changelog drained into the
#: store; the destinations compared equal to it; their writes discarded (--discard-new-writes); or the
#: cutover never reached its switch, so the runtime wrote nowhere else.
ROLLED_BACK_BY: Final = ("drain_reverse", "compare", "discard", "never_switched")
STATES: Final = ("replicating", "cutting_over", "cut_over", "aborted", "failed", "rolling_back", "rolled_back")


class StateError(Fatal):
    """The migration state file beside the store cannot be read or written."""


def state_path(db: Path) -> Path:
    return db.with_name(db.name + ".migration.json")


def pid_alive(pid: int | None) -> bool:
    """True while a process ``pid`` runs on this host (one owned by another user counts as running);
    False for None. Used to tell a crashed cutover or migration from one still at work."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class MigrationState:
    state: str = "replicating"
    step: str | None = None
    target: str | None = None
    config: str | None = None
    pid: int | None = None
    final_seq: int | None = None
    reason: str | None = None
    updated_at_ms: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    # How the last rollback resolved the cutover (cutover/rollback.py): when, what it resolved (the
    # state it found), by which step the store got every write (ROLLED_BACK_BY), and the Neo4j
    # changelog seq the store drained to (None without reverse replication).
    rolled_back_at_ms: int | None = None
    rolled_back_from: str | None = None
    rolled_back_by: str | None = None
    reverse_seq: int | None = None

    def process_alive(self) -> bool:
        return pid_alive(self.pid)

    def describe(self) -> str:
        """One line for ``replicator status``."""
        if self.state in ("cutting_over", "rolling_back"):
            return self._in_progress()
        if self.state == "cut_over":
            return f"cut over to {self.target} at seq {self.final_seq}"
        if self.state in ("aborted", "failed"):
            return f"cutover to {self.target} {self.state} at step {self.step}: {self.reason}"
        if self.state == "rolled_back":
            return self._rolled_back()
        return "replicating (no cutover yet)"

    def _rolled_back(self) -> str:
        if self.rolled_back_at_ms is None:  # a state file of an older replicator
            return f"rolled back from {self.target}; the store takes writes"
        how = {
            "drain_reverse": f"Neo4j fenced, its writes drained into the store to changelog seq {self.reverse_seq}",
            "compare": "the destinations compared equal to the store",
            "discard": "writes the new backend took were discarded",
            "never_switched": "the runtime had not switched",
        }.get(self.rolled_back_by or "", self.rolled_back_by)
        return f"rolled back from {self.target} at {iso_time(self.rolled_back_at_ms)} ({how}); the store takes writes"

    def rollback_resolution(self) -> dict[str, Any] | None:
        """How the rollback resolved the cutover (``status --json``), None unless rolled back."""
        if self.state != "rolled_back" or self.rolled_back_at_ms is None:
            return None
        return {
            "at": iso_time(self.rolled_back_at_ms), "at_ms": self.rolled_back_at_ms, "from": self.rolled_back_from,
            "by": self.rolled_back_by, "reverse_drained_to_seq": self.reverse_seq,
        }  # fmt: skip

    def _in_progress(self) -> str:
        """A cutover or rollback step: running, or interrupted (its process is gone)."""
        steps, doing, done = (
            (STEPS, f"cutting over to {self.target}", f"cutover to {self.target}")
            if self.state == "cutting_over"
            else (ROLLBACK_STEPS, f"rolling back from {self.target}", f"rollback from {self.target}")
        )
        number = steps.index(self.step) + 1 if self.step in steps else "?"
        if self.process_alive():
            return f"{doing}: step {number} ({self.step}) in progress, pid {self.pid}"
        gone = f"its process {self.pid} is gone" if self.pid is not None else "its process is gone"
        return f"{done} interrupted at step {number} ({self.step}); {gone}"


def iso_time(ms: int) -> str:
    """Epoch milliseconds as UTC ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def load(db: Path) -> MigrationState:
    """The state recorded beside ``db`` (``replicating`` when there is none). Raises StateError."""
    path = state_path(db)
    try:
        if not path.exists():
            return MigrationState()
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateError(
            f"cannot read the migration state {path}: {exc}",
            hint="restore the file or move it aside (the store itself shows whether it refuses writes)",
        ) from exc
    known = {f.name for f in fields(MigrationState)}
    if not isinstance(data, dict) or not set(data) <= known:
        raise StateError(f"{path} is not a migration state file", hint="move it aside: replicator did not write it")
    return MigrationState(**data)


def save(db: Path, current: MigrationState, **changes: Any) -> MigrationState:  # noqa: ANN401
    """Apply ``changes``, append them to the history, write atomically and durably. Returns the new
    state. Raises StateError (the directory is missing or not writable)."""
    for key, value in changes.items():
        setattr(current, key, value)
    current.updated_at_ms = time.time_ns() // 1_000_000
    current.history.append({"at_ms": current.updated_at_ms, **{k: v for k, v in changes.items() if k != "history"}})
    path = state_path(db)
    tmp = path.with_name("." + path.name + f".{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(json.dumps(asdict(current), indent=2))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StateError(
            f"cannot write the migration state {path}: {exc}", hint="check that the store's directory is writable"
        ) from exc
    return current


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
