"""``replicator migrate --strategy blue-green``: the seed guide's offline path, for a store that can
stop. Steps, each recorded in the migration's history and in the cutover's state file (so
``replicator status`` names an interruption and ``replicator rollback`` resolves it):

1. **preflight** (changes nothing): caxton.yaml readable and still naming the store, no cutover
   running, each destination reachable and accepting our credentials (its schema is created).
2. **fence**: the store durably refuses writes (the cutover's refusal triggers): from here on the
   export is the store's whole content, and Caxton's writers get "memory store moved".
3. **export**: the store with its vectors, to ``<db>.migration-<id>.export.json`` (kept: a rerun
   imports the same file).
4. **import**: into Neo4j and Qdrant through the sinks' own destinations (``guide.backends``), in
   batches; each destination stores how far it got with the data, the checkpoint a rerun resumes
   from (the guide's recovery manager).
5. **validate**: counts, a sample field by field and (``validation.consistency_checks``) search
   consistency, against every destination.
6. **switch**: after the go (a postpone flag gone, a confirmation), caxton.yaml names the target.

A failed validation removes the refusal (the store takes writes again, caxton.yaml unchanged) and
ends the migration ``aborted``. Any other failure or an interrupt leaves it ``failed``, the store
still refusing writes: a rerun resumes, ``rollback`` gives the store back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from replicator.capture.storefile import open_store
from replicator.config import MigrationConfig
from replicator.cutover import config as caxton_config
from replicator.cutover import fence, state
from replicator.errors import ReplicatorError
from replicator.migration import history
from replicator.migration.history import Migration, MigrationError

Log = Callable[[str], None]
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BlueGreenPlan:
    config: MigrationConfig
    db: Path
    caxton: Path
    batch_size: int = 1000
    lock_timeout_s: float = 10.0


@dataclass
class BlueGreenReport:
    migration_id: str
    target: str
    ok: bool = False
    aborted_at: str | None = None
    reason: str | None = None
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # backend -> table -> rows imported
    resumed: dict[str, int] = field(default_factory=dict)  # backend -> rows an earlier run had imported
    validation: str = ""
    export: str = ""
    config_backup: str = ""

    def text(self) -> str:
        head = f"migration {self.migration_id} (blue-green to {self.target})"
        if not self.ok:
            return f"{head}: aborted at {self.aborted_at}: {self.reason}"
        lines = [f"{head}: done"]
        for backend, rows in self.rows.items():
            parts = ", ".join(f"{n} {t}" for t, n in rows.items())
            again = self.resumed.get(backend)
            lines.append(f"  {backend:<12}{parts}" + (f" (resumed after {again} rows)" if again else ""))
        lines.append(f"  export      {self.export}")
        lines.append(f"  caxton.yaml memory.backend = {self.target} (backup {self.config_backup})")
        lines.append(f"  validation  {self.validation.splitlines()[0] if self.validation else ''}")
        return "\n".join(lines)


def _test_pause() -> None:
    """Fault injection for the crash tests: after REPLICATOR_MIGRATE_PAUSE_AFTER batches of the import,
    touch REPLICATOR_MIGRATE_PAUSE_FILE and sleep (the test kills the process there)."""
    left = os.environ.get("REPLICATOR_MIGRATE_PAUSE_AFTER")
    if left is None:
        return
    if int(left) > 1:
        os.environ["REPLICATOR_MIGRATE_PAUSE_AFTER"] = str(int(left) - 1)
        return
    Path(os.environ["REPLICATOR_MIGRATE_PAUSE_FILE"]).touch()
    time.sleep(60)


def export_path(db: Path, migration_id: str) -> Path:
    return db.with_name(f"{db.name}.migration-{migration_id}.export.json")


class BlueGreen:
    """One run (or a resumed run) of the steps. ``wait_for_go`` blocks until the switch may happen
    and returns False to abort it."""

    def __init__(
        self, plan: BlueGreenPlan, migration: Migration, *, log: Log, progress: ProgressFn,
        wait_for_go: Callable[[], bool],
    ) -> None:  # fmt: skip
        self.plan, self.migration, self.log, self.progress = plan, migration, log, progress
        self.wait_for_go = wait_for_go
        self.report = BlueGreenReport(migration.id, migration.target)
        self.st = state.load(plan.db)

    def step(self, name: str, **changes: Any) -> None:  # noqa: ANN401
        cutover_step = {"export": "drain", "import": "drain"}.get(name, name)
        state.save(self.plan.db, self.st, state="cutting_over", step=cutover_step, target=self.migration.target,
                   config=str(self.plan.caxton), pid=os.getpid(), reason=None)  # fmt: skip
        history.record(self.plan.db, self.migration, name, pid=os.getpid(), **changes)
        self.log(f"{name} ...")

    def run(self) -> BlueGreenReport:
        """All steps. Blocks. Returns the report (ok, or aborted with a reason). Raises what the
        destinations raise (each names its server and fix), recorded as ``failed`` first."""
        self.preflight()
        try:
            self.fence()
            doc = self.export()
            self.load(doc)
            if not self.validate():
                return self.report
            if not self.wait_for_go():
                return self.abort("switch", "the operator did not confirm the switch", give_back=True)
            self.switch()
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
            state.save(self.plan.db, self.st, state="failed", reason=reason, pid=None)
            history.record(self.plan.db, self.migration, None, state="failed", reason=reason, pid=None)
            raise
        return self.report

    def abort(self, at: str, reason: str, *, give_back: bool) -> BlueGreenReport:
        if give_back:
            fence.remove_refusal(self.plan.db)
        state.save(self.plan.db, self.st, state="aborted", step=None, reason=reason, pid=None)
        history.record(self.plan.db, self.migration, None, state="aborted", reason=reason, pid=None)
        self.report.aborted_at, self.report.reason = at, reason
        return self.report

    def preflight(self) -> None:
        """Checks that change nothing but the destinations' schema; records nothing, so a wrong
        password or an unreachable server stops the migration before it has an id on file. Raises
        MigrationError / MigrateError / ConfigError naming the problem."""
        from replicator.guide.backends import named  # noqa: PLC0415
        from replicator.sinks.errors import DestinationRefused, DestinationUnavailable  # noqa: PLC0415

        if self.st.state == "cut_over":
            raise MigrationError(f"{self.plan.db} is already cut over to {self.st.target}",
                                 hint="`replicator rollback` first to migrate it again")  # fmt: skip
        caxton_config.read_backend(self.plan.caxton)  # readable and switchable, before anything changes
        for backend, destination, where in self.destinations():
            try:
                destination.start()  # reachable, credentials accepted, schema or collection created
            except (DestinationUnavailable, DestinationRefused) as exc:
                neo4j = self.plan.config.neo4j.settings() if backend == "neo4j" and self.plan.config.neo4j else None
                raise named(exc, where, neo4j) from exc
            finally:
                destination.close()
            self.log(f"  {where}: reachable")
        self.step("preflight")

    def fence(self) -> None:
        self.step("fence")
        conn = open_store(self.plan.db, timeout_s=self.plan.lock_timeout_s)
        try:
            refused = fence.refusal_installed(conn)
        finally:
            conn.close()
        if refused:  # a resumed run: the store has refused writes since then
            return
        held = fence.acquire(self.plan.db, self.plan.lock_timeout_s)
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        held.refuse_writes_and_release(fence.refusal_message(self.migration.target, at))

    def export(self) -> dict[str, Any]:
        from replicator.guide.export import export_document, write_export  # noqa: PLC0415
        from replicator.guide.importer import load_document  # noqa: PLC0415

        path = export_path(self.plan.db, self.migration.id)
        self.step("export", export=str(path))
        self.report.export = str(path)
        if path.exists():  # written whole (renamed into place) by an earlier run, after the fence
            return load_document(path)
        doc = export_document(self.plan.db, with_embeddings=True)
        partial = path.with_name(path.name + ".partial")
        with partial.open("w", encoding="utf-8") as out:
            write_export(doc, out)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)
        return doc

    def load(self, doc: dict[str, Any]) -> None:
        from replicator.guide.backends import load_export  # noqa: PLC0415

        self.step("import")
        for backend, destination, _ in self.destinations():

            def progress(table: str, done: int, total: int, backend: str = backend) -> None:
                self.progress(f"{backend} {table}", done, total)
                _test_pause()

            result = load_export(doc, backend, destination, batch_size=self.plan.batch_size, progress=progress)
            self.report.rows[backend] = result.rows
            self.report.resumed[backend] = sum(result.resumed.values())

    def validate(self) -> bool:
        from replicator.validation.validate import ValidationOptions, validate  # noqa: PLC0415

        self.step("validate")
        cfg = self.plan.config
        options = ValidationOptions(sample=cfg.validation.sample_queries or 100,
                                    search=cfg.validation.consistency_checks)  # fmt: skip
        found = validate(
            self.plan.db, [self.migration.target], options=options,
            neo4j=cfg.neo4j.settings() if cfg.neo4j else None, graph_model=cfg.neo4j.graph if cfg.neo4j else None,
            qdrant=cfg.qdrant.settings() if cfg.qdrant else None,
            qdrant_api_key=cfg.qdrant.api_key.value if cfg.qdrant and cfg.qdrant.api_key else None,
        )  # fmt: skip
        self.report.validation = found.to_text()
        if not found.ok:
            self.abort("validate", "the destinations differ from the store:\n" + found.to_text(), give_back=True)
        return found.ok

    def switch(self) -> None:
        self.step("switch")
        backup = caxton_config.switch_backend(self.plan.caxton, self.migration.target)
        self.report.config_backup, self.report.ok = str(backup), True
        state.save(self.plan.db, self.st, state="cut_over", step=None, pid=None)
        history.record(self.plan.db, self.migration, "done", state="done", pid=None)

    def destinations(self) -> list[tuple[str, Any, str]]:
        """(backend, the sink's destination under the import's position name, how to name it) of
        every configured backend."""
        from replicator.guide.backends import sink_name  # noqa: PLC0415

        cfg = self.plan.config
        out: list[tuple[str, Any, str]] = []
        if cfg.neo4j is not None:
            from replicator.sinks.neo4j.destination import Neo4jDestination  # noqa: PLC0415

            graph = cfg.neo4j.graph
            where = f"Neo4j {cfg.neo4j.uri} label {graph.entity_label}"
            out.append(("neo4j", Neo4jDestination(sink_name(graph.namespace), cfg.neo4j.settings(), graph), where))
        if cfg.qdrant is not None:
            from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings  # noqa: PLC0415

            q = cfg.qdrant
            key = q.api_key.value if q.api_key else None
            where = f"Qdrant {q.url or q.path} collection {q.collection}"
            sink = QdrantDestination(QdrantSinkSettings(q.settings(), sink_name(q.collection), key))
            out.append(("qdrant", sink, where))
        return out


def refuse_running(db: Path) -> None:
    """Raise unless no cutover or migration is in progress on ``db`` (a live process owns it)."""
    st = state.load(db)
    if st.state == "cutting_over" and st.process_alive():
        raise ReplicatorError(f"a cutover or migration of {db} is running (pid {st.pid})", hint="wait for it")
