"""``replicator check``: the seed guide's pre-migration checklist as checks that run.

Each check passes, warns, or fails with the fix. Read-only on the store (``mode=ro``); it writes only
a scratch database in a temporary directory, to measure what capture's triggers cost a write here.
Blocks (seconds: the overhead measurement and one round trip per server).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from replicator.capture.install import install
from replicator.errors import ReplicatorError
from replicator.store.schema import DDL, EMBEDDING_COLUMNS, ENTITY_COLUMNS, RELATION_COLUMNS
from replicator.validation.store import StoreReader

Status = Literal["pass", "warn", "fail"]
#: Above this share of the writer's time spent in capture's triggers, warn (at the recent mean rate).
OVERHEAD_WARN: Final = 0.2
_WRITES: Final = 200  # single-row commits per overhead measurement
_DAY_MS: Final = 86_400_000


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def failed(name: str, exc: BaseException, fix: str) -> Check:
    """A check that could not run, named by what stopped it."""
    said = exc.message if isinstance(exc, ReplicatorError) else f"{type(exc).__name__}: {exc}"
    hint = exc.hint if isinstance(exc, ReplicatorError) and exc.hint else fix
    return Check(name, "fail", said, hint)


def check_schema(db: Path) -> Check:
    """The store's tables have STORE.md's columns, the file passes ``quick_check``, and it is in WAL
    mode (the writer's; capture and every reader rely on readers never blocking it)."""
    try:
        with StoreReader(db) as store:
            conn = store.conn
            wanted = {"entities": ENTITY_COLUMNS, "relations": RELATION_COLUMNS, "embeddings": EMBEDDING_COLUMNS}
            missing = [
                f"{t}.{c}" for t, cols in wanted.items()
                for c in cols if c not in {str(r[1]) for r in conn.execute(f"PRAGMA table_info({t})")}
            ]  # fmt: skip
            quick = str(conn.execute("PRAGMA quick_check").fetchone()[0])
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    except Exception as exc:
        return failed("store schema", exc, "point --db at Caxton's memory.db")
    if missing:
        return Check("store schema", "fail", f"missing columns {', '.join(missing)}",
                     "the store predates STORE.md's schema: upgrade Caxton's store first")  # fmt: skip
    if quick != "ok":
        return Check("store schema", "fail", f"quick_check: {quick}", "restore the store from a backup")
    if mode != "wal":
        return Check("store schema", "warn", f"journal_mode is {mode}, not wal",
                     "Caxton's writer sets WAL; a store in another mode blocks its writer during reads")  # fmt: skip
    return Check("store schema", "pass", "STORE.md's columns, quick_check ok, WAL")


def check_backup(db: Path, backup: Path | None) -> Check:
    """A backup export exists and reads back (parsed and checked as ``import`` would), with its
    counts against the store's."""
    fix = f"replicator export --db {db} --with-embeddings -o backup.json, then --backup backup.json"
    if backup is None:
        return Check("backup", "fail", "no backup export given", fix)
    from replicator.guide.importer import load_document  # noqa: PLC0415 - only with a backup

    try:
        doc = load_document(backup)
        with StoreReader(db) as store, store.transaction():
            counts = store.counts()
    except Exception as exc:
        return failed("backup", exc, fix)
    got = {t: len(doc.get(t) or []) for t in ("entities", "relations", "embeddings")}
    when = doc["metadata"].get("exported_at", "?")
    shown = ", ".join(f"{got[t]:,} {t}" for t in got)
    if got["embeddings"] == 0 and counts["embeddings"] > 0:
        return Check("backup", "warn", f"{backup} ({when}) reads back: {shown}, no embeddings",
                     "export with --with-embeddings, or the vectors must be recomputed after a restore")  # fmt: skip
    behind = {t: counts[t] - got[t] for t in got if counts[t] != got[t]}
    if behind:
        diff = ", ".join(f"{t} {n:+,}" for t, n in behind.items())
        return Check("backup", "warn", f"{backup} ({when}) reads back: {shown}; the store has changed since ({diff})",
                     "a live store moves on; export again just before starting if the difference matters")  # fmt: skip
    return Check("backup", "pass", f"{backup} ({when}) reads back: {shown}, as the store holds")


def check_disk(db: Path, backup: Path | None) -> Check:
    """Room beside the store: the changelog can grow to the store's size while the migration runs
    (every row changed once, before and after images) and the snapshot's read keeps the WAL from
    being checkpointed; plus room for an export when none was given."""
    size = db.stat().st_size if db.exists() else 0
    need = size + (size if backup is None else 0)
    free = shutil.disk_usage(db.parent if db.parent.exists() else Path(".")).free
    detail = f"{free / 1e9:.2f} GB free beside the store, {need / 1e9:.2f} GB wanted"
    if free < need:
        return Check("disk", "fail", detail, f"free at least {(need - free) / 1e9:.2f} GB on {db.parent}")
    if free < 2 * need:
        return Check("disk", "warn", detail, "less than twice what is wanted: watch the changelog backlog (`lag`)")
    return Check("disk", "pass", detail)


def _commits(path: Path, count: int) -> float:
    """Seconds for ``count`` single-row commits (an insert and an update each), as the writer makes them."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")
    started = time.perf_counter()
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO entities (name, entity_type, observations, created_at, updated_at) VALUES (?, 't', ?, 1, 1)",
            (f"{path.name}-{i}-{time.perf_counter_ns()}", json.dumps([f"note {i}"])),
        )
        conn.execute("UPDATE entities SET observations = ? WHERE id = last_insert_rowid()", (json.dumps(["x"]),))
        conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


def measure_overhead(count: int = _WRITES) -> tuple[float, float]:
    """Milliseconds per write without and with capture, on scratch stores of STORE.md's schema in a
    temporary directory (this machine's disk and SQLite). Blocks."""
    with tempfile.TemporaryDirectory(prefix="replicator-check-") as tmp:
        plain, captured = Path(tmp, "plain.db"), Path(tmp, "captured.db")
        for path in (plain, captured):
            conn = sqlite3.connect(path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(DDL)
            conn.close()
        install(captured)
        _commits(plain, 20), _commits(captured, 20)  # warm the files and caches alike
        without, with_capture = _commits(plain, count), _commits(captured, count)
    return without * 1000 / count, with_capture * 1000 / count


def recent_rate(db: Path, now_ms: int) -> float:
    """Writes per second over the last day, from the rows' own times (entities and relations updated,
    embeddings created). A mean: bursts are higher. Read-only."""
    since = now_ms - _DAY_MS
    with StoreReader(db) as store, store.transaction():
        n = sum(
            int(store.conn.execute(f"SELECT count(*) FROM {t} WHERE {col} >= ?", (since,)).fetchone()[0])
            for t, col in (("entities", "updated_at"), ("relations", "updated_at"), ("embeddings", "created_at"))
        )
    return n / 86_400


def check_overhead(db: Path, measured: tuple[float, float] | None = None) -> Check:
    """What capture's triggers add to each write here, and what that is at the store's recent rate."""
    try:
        without, with_capture = measured or measure_overhead()
        rate = recent_rate(db, time.time_ns() // 1_000_000)
    except Exception as exc:
        return failed("capture overhead", exc, "check that the temporary directory is writable (TMPDIR)")
    added = max(with_capture - without, 0.0)
    share = rate * added / 1000
    detail = (
        f"a write takes {without:.2f} ms, {with_capture:.2f} ms with capture (+{added:.2f} ms, "
        f"{with_capture / without if without else 0:.1f}x); the last day's mean rate {rate:.2f} writes/s "
        f"spends {share:.1%} of the writer's time more"
    )
    if share > OVERHEAD_WARN:
        return Check("capture overhead", "warn", detail,
                     "migrate at a quieter time, or expect writes to slow while capture is installed")  # fmt: skip
    return Check("capture overhead", "pass", detail)


def check_neo4j(settings: Any) -> Check:  # noqa: ANN401 - Neo4jSettings
    """Neo4j answers with these credentials, and is a 5.x server (what the sink is built and tested
    against: typed relationship indexes, ``IF NOT EXISTS``)."""
    import neo4j  # noqa: PLC0415 - only when Neo4j is a target

    from replicator.sinks.neo4j.faults import describe  # noqa: PLC0415

    try:
        with neo4j.GraphDatabase.driver(settings.uri, auth=settings.auth(), notifications_min_severity="OFF") as d:
            records, _, _ = d.execute_query(
                "CALL dbms.components() YIELD versions, edition", database_=settings.database
            )
    except Exception as exc:
        said, fix = describe(exc, settings)
        return Check("neo4j", "fail", said, fix)
    version, edition = str(records[0]["versions"][0]), str(records[0]["edition"])
    detail = f"{settings.uri} answers as {settings.user!r}: Neo4j {version} {edition}, database {settings.database!r}"
    if not version.startswith("5."):
        return Check("neo4j", "warn" if int(version.split(".", maxsplit=1)[0]) > 5 else "fail", detail,
                     "the sink is built and tested against Neo4j 5 (5.26 LTS)")  # fmt: skip
    return Check("neo4j", "pass", detail)


def check_qdrant(settings: Any, api_key: str | None) -> Check:  # noqa: ANN401 - QdrantSettings
    """Qdrant answers (server: with this API key, and its version; local mode: the path opens)."""
    from replicator.sinks.qdrant.reader import open_qdrant  # noqa: PLC0415 - only when Qdrant is a target

    try:
        client = open_qdrant(settings, api_key)
        try:
            collections = [c.name for c in client.get_collections().collections]
            version = client.info().version if settings.url else "local mode"
        finally:
            client.close()
    except Exception as exc:
        return failed("qdrant", exc, "check --qdrant-url and the API key (REPLICATOR_QDRANT_API_KEY or a file)")
    where = settings.url or settings.path
    has = "exists" if settings.collection in collections else "will be created by the sink"
    return Check("qdrant", "pass", f"{where} answers ({version}); collection {settings.collection!r} {has}")


def check_kafka(settings: Any) -> Check:  # noqa: ANN401 - KafkaSettings
    """Kafka answers, and its brokers can give the topics the replication they will be created with."""
    from confluent_kafka import KafkaException  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - only when checking

    from replicator.transport.kafka import classify  # noqa: PLC0415

    try:
        try:
            meta = AdminClient(settings.common()).list_topics(timeout=settings.timeout_s)
        except KafkaException as exc:
            raise classify(settings, "list topics", exc) from exc
        replication = settings.replication(len(meta.brokers))
    except Exception as exc:
        return failed("kafka", exc, "start the broker (`replicator stack up` for the local one), or check the address")
    return Check(
        "kafka", "pass",
        f"{settings.bootstrap_servers} answers: {len(meta.brokers)} broker(s), topics get {replication.factor} "
        f"replica(s), {replication.min_insync} in sync for a write",
    )  # fmt: skip


def format_checks(checks: list[Check]) -> str:
    marks = {"pass": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for c in checks:
        lines.append(f"{marks[c.status]} {c.name:<17} {c.detail}")
        if c.fix and c.status != "pass":
            lines.append(f"     {'':<17} fix: {c.fix}")
    failures = sum(c.status == "fail" for c in checks)
    lines.append("ready to migrate" if not failures else f"not ready: {failures} check(s) failed")
    return "\n".join(lines)
