"""Migration ids and their history, kept beside the store in ``<db>.migrations.json``.

One record per ``replicator migrate`` run: its id, strategy, target, state (``running`` ->
``done`` | ``aborted`` | ``failed``; ``rolled_back`` after ``rollback --migration-id``) and every step
with its time and outcome. Written atomically and durably (temp file, fsync, rename, fsync of the
directory) at every step, with the pid that owns the run, so ``status --migration-id`` tells a
running migration from an interrupted one. The cutover's own state (``<db>.migration.json``,
``replicator.cutover.state``) stays the one record of what the store and caxton.yaml hold; this file
is the operator's view by id.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from replicator.cutover.state import pid_alive
from replicator.errors import Fatal

STATES: Final = ("running", "done", "aborted", "failed", "rolled_back")


class MigrationError(Fatal):
    """A migration cannot be found, resumed or recorded."""


def history_path(db: Path) -> Path:
    return db.with_name(db.name + ".migrations.json")


def new_id() -> str:
    """A sortable, unique id: UTC time of the start and 4 random hex digits."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


@dataclass
class Migration:
    id: str
    strategy: str
    target: str
    config: str
    state: str = "running"
    pid: int | None = None
    reason: str | None = None
    started_ms: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)

    def alive(self) -> bool:
        return pid_alive(self.pid)

    @property
    def last_step(self) -> str | None:
        return str(self.steps[-1]["step"]) if self.steps else None

    def describe(self) -> str:
        """One line for ``status --migration-id``."""
        head = f"migration {self.id} ({self.strategy} to {self.target})"
        if self.state == "running":
            if self.alive():
                return f"{head}: step {self.last_step} in progress, pid {self.pid}"
            return (
                f"{head}: interrupted at step {self.last_step} (its process {self.pid} is gone); "
                "rerun `replicator migrate` with the same file to resume, or "
                f"`replicator rollback --migration-id {self.id} --reason TEXT`"
            )
        if self.state == "done":
            return f"{head}: done"
        if self.state == "rolled_back":
            return f"{head}: rolled back ({self.reason})"
        return f"{head}: {self.state} at step {self.last_step}: {self.reason}"


def load_all(db: Path) -> dict[str, Migration]:
    """Every migration recorded beside ``db``, by id, oldest first. Raises MigrationError."""
    path = history_path(db)
    try:
        if not path.exists():
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MigrationError(
            f"cannot read the migration history {path}: {exc}", hint="restore or move it aside"
        ) from exc
    known = {f.name for f in fields(Migration)}
    if not isinstance(data, list) or not all(isinstance(m, dict) and set(m) <= known for m in data):
        raise MigrationError(f"{path} is not a migration history", hint="move it aside: replicator did not write it")
    return {m["id"]: Migration(**m) for m in data}


def find(db: Path, migration_id: str) -> Migration:
    """The migration ``migration_id`` of ``db``. Raises MigrationError naming the ids there are."""
    found = load_all(db)
    if migration_id not in found:
        known = ", ".join(found) or "none"
        raise MigrationError(
            f"no migration {migration_id!r} for {db} (known: {known})",
            hint="`replicator status --db DB` names the store's migrations; check --db / --config",
        )
    return found[migration_id]


def unfinished(db: Path) -> Migration | None:
    """The newest migration of ``db`` that neither finished nor was rolled back, if any."""
    pending = [m for m in load_all(db).values() if m.state in ("running", "aborted", "failed")]
    return pending[-1] if pending else None


def record(db: Path, migration: Migration, step: str | None = None, **changes: Any) -> Migration:  # noqa: ANN401
    """Apply ``changes``, append ``step`` (with the changes) to its steps, write the history durably."""
    for key, value in changes.items():
        setattr(migration, key, value)
    if step is not None:
        migration.steps.append({"step": step, "at_ms": time.time_ns() // 1_000_000, **changes})
    everything = load_all(db)
    everything[migration.id] = migration
    _write(history_path(db), json.dumps([asdict(m) for m in everything.values()], indent=1))
    return migration


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MigrationError(
            f"cannot write {path}: {exc}", hint="check that the store's directory is writable"
        ) from exc
