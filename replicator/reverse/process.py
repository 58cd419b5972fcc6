"""The reverse process: Neo4j's changelog of one namespace, applied to the store, in a loop.

Position: the store's (``apply.read_position``), committed with the rows it covers; Neo4j's changelog
rows are pruned only after that commit, so a ``kill -9`` at any point is followed by a restart that
applies exactly what was not committed (rows at or below the stored position are skipped). Neo4j
unreachable or restarting is retried (logged once per outage); a store that cannot be written stops
the process loudly. Embeddings of entities whose text changed are recomputed with the packaged model
(loaded on first need) or, with ``embed=None``, left as they are (docs/reverse.md says why not).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import neo4j
from neo4j.exceptions import ServiceUnavailable, SessionExpired, TransientError

from replicator.capture.install import read_state
from replicator.capture.storefile import CaptureError, open_store
from replicator.reverse.apply import Applied, Embed, apply, read_position
from replicator.reverse.aside import set_aside
from replicator.reverse.changelog import Changelog, Head
from replicator.sinks.neo4j import layout
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.settings import Neo4jSettings

_UNAVAILABLE: Final = (ServiceUnavailable, SessionExpired, TransientError, OSError)
Log = Callable[[str], None]


@dataclass(frozen=True)
class ReverseLag:
    """How far the store is behind Neo4j's changelog: transactions and seconds (0, 0: caught up).
    ``applied_at_ms``: when the reverse process last committed into the store (0: never)."""

    head_seq: int
    applied_seq: int
    seconds: float
    applied_at_ms: int = 0
    applied_ts_ms: int = 0
    #: Changes Neo4j took that the store refused and no later change replaced (aside.set_aside).
    set_aside: tuple[str, ...] = ()

    @property
    def transactions(self) -> int:
        return max(0, self.head_seq - self.applied_seq)


#: Torch threads of the reverse process. One: it embeds a handful of texts per step, and with more
#: threads than free cores torch's workers spin against each other and against Neo4j and the
#: runtime (measured under load average 9-12 on 2 cores: 0.5-1.7 s for one text with 2 threads,
#: 0.02-0.04 s with 1; 20 texts 1.3-1.6 s against 0.18 s). Every second of it is a second of the
#: rollback's pause when it falls in the drain.
EMBED_THREADS: Final = 1


def model_embed(threads: int = EMBED_THREADS) -> Embed:
    """An Embed with the packaged all-MiniLM-L6-v2, loaded on first use (blocks seconds), computing on
    ``threads`` torch threads (the whole process's setting). Raises ModelError."""
    from replicator.embedding import MODEL_NAME, load_model  # noqa: PLC0415 - the model loads on use
    from replicator.store.schema import pack_vector  # noqa: PLC0415

    loaded: list[object] = []

    def embed(texts: Sequence[str]) -> tuple[list[bytes], str]:
        if not loaded:
            import torch  # noqa: PLC0415 - loaded with the model

            torch.set_num_threads(threads)
            loaded.append(load_model())
        vectors = loaded[0].encode(list(texts), normalize_embeddings=True)  # type: ignore[attr-defined]
        return [pack_vector([float(x) for x in v]) for v in vectors], MODEL_NAME

    return embed


def store_conn(db: Path) -> sqlite3.Connection:
    """The store opened for the reverse writes: autocommit (apply runs its own transactions), foreign
    keys on (cascades), a 30 s busy timeout. Raises CaptureError."""
    conn = open_store(db, timeout_s=30.0)
    conn.isolation_level = None
    return conn


def enable(db: Path, changelog: Changelog) -> Head:
    """Turn Neo4j's capture on for the namespace, new ids starting above every id the store has used
    (AUTOINCREMENT's high marks). Idempotent. Raises PluginMissing, NamespaceCaptured, CaptureError."""
    conn = open_store(db, readonly=True)
    try:
        store_id = read_state(conn).store_id
        if store_id is None:
            raise CaptureError(f"{db} has no capture installed", hint="replicator source install --db ...")
        high = dict(conn.execute("SELECT name, seq FROM sqlite_sequence WHERE name IN ('entities', 'relations')"))
        top_e = int(conn.execute("SELECT coalesce(max(id), 0) FROM entities").fetchone()[0])
        top_r = int(conn.execute("SELECT coalesce(max(id), 0) FROM relations").fetchone()[0])
    finally:
        conn.close()
    next_e = max(int(high.get("entities", 0)), top_e) + 1
    next_r = max(int(high.get("relations", 0)), top_r) + 1
    return changelog.enable(store_id, next_e, next_r)


def changelog_for(driver: neo4j.Driver, database: str, model: GraphModel) -> Changelog:
    """The changelog of ``model``'s namespace, adopting the new nodes its layout's clients create."""
    return Changelog.for_driver(driver, database, model.entity_label, layout.adopted_labels(model.layout))


def prepare(db: Path, settings: Neo4jSettings, model: GraphModel) -> Head:
    """Before a cutover: capture on for ``model``'s label (again after a rollback: fence lifted), so that
    no write the runtime makes in Neo4j after the switch is missed; the forward sink's are not captured.
    Idempotent. Raises PluginMissing (the cutover must not start), NamespaceCaptured, CaptureError."""
    with neo4j.GraphDatabase.driver(settings.uri, auth=settings.auth(), notifications_min_severity="OFF") as driver:
        changelog = changelog_for(driver, settings.database, model)
        head = enable(db, changelog)
        changelog.resume()
        return head


def spawn(db: Path, settings: Neo4jSettings, model: GraphModel) -> tuple[int, Path]:
    """Start ``replicator reverse run`` for ``db`` in the background (its own session, so it outlives
    the cutover command), logging to ``<db>.reverse.log``. The password goes in its environment, never
    its argv. Returns its pid and log."""
    log = db.with_name(db.name + ".reverse.log")
    cmd = [
        sys.executable, "-m", "replicator", "reverse", "run", "--db", str(db), "--neo4j-uri", settings.uri,
        "--neo4j-user", settings.user, "--neo4j-database", settings.database, "--entity-label", model.entity_label,
        "--layout", model.layout,
        "--relation-type-property", model.relation_type_property, "--confidence-property",
        model.confidence_property, "--strength-property", model.strength_property,
    ]  # fmt: skip
    env = {**os.environ, **({"REPLICATOR_NEO4J_PASSWORD": settings.password} if settings.password else {})}
    with open(log, "a") as out:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    return proc.pid, log


def step(conn: sqlite3.Connection, changelog: Changelog, model: GraphModel, embed: Embed | None,
         batch: int = 500) -> Applied:  # fmt: skip
    """Apply the next whole transactions past the store's position, then prune what the store holds.
    Blocks. Raises what the driver raises (Neo4j down) and sqlite3.Error (the store)."""
    stored = read_position(conn, changelog.ns)
    after = stored.seq if stored is not None else 0
    changes = changelog.read(after, batch)
    done = apply(conn, changelog.ns, changes, model, embed) if changes else Applied()
    if done.position is not None:
        changelog.prune(done.position.seq)
    return done


def lag(conn: sqlite3.Connection, changelog: Changelog, now_ms: int | None = None) -> ReverseLag | None:
    """The reverse lag (None when capture is off for the namespace). Blocks on one or two reads."""
    head = changelog.head()
    if head is None:
        return None
    stored = read_position(conn, changelog.ns)
    applied = stored.seq if stored is not None else 0
    oldest = changelog.oldest_ts_ms(applied) if head.seq > applied else None
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    seconds = 0.0 if oldest is None else max(0.0, (now - oldest) / 1000)
    if stored is None:
        return ReverseLag(head.seq, applied, seconds)
    aside = tuple(set_aside(conn, changelog.ns))
    return ReverseLag(head.seq, applied, seconds, stored.applied_at_ms, stored.ts_ms, aside)


def read_lag(db: Path, settings: Neo4jSettings, label: str, timeout_s: float = 10.0) -> ReverseLag | None:
    """The reverse lag of ``label`` into ``db`` (None when capture is off for it), for lag and status.
    Blocks up to about ``timeout_s``. Raises what the driver raises and CaptureError."""
    conn = open_store(db, readonly=True)
    try:
        with neo4j.GraphDatabase.driver(
            settings.uri, auth=settings.auth(), connection_timeout=timeout_s, max_transaction_retry_time=0,
            notifications_min_severity="OFF",
        ) as driver:  # fmt: skip
            return lag(conn, Changelog.for_driver(driver, settings.database, label))
    finally:
        conn.close()


def run(db: Path, settings: Neo4jSettings, model: GraphModel, *, embed: Embed | None, stop: Callable[[], bool],
        log: Log, idle_s: float = 0.05, capture_check_s: float = 1.0) -> str | None:  # fmt: skip
    """Apply Neo4j's changelog to the store until ``stop()``, or until capture is off for the namespace
    and nothing is left to apply (a rollback finished: it turns capture off only once the store has
    applied Neo4j's last seq); then returns why it ended (None after ``stop()``). Retries while Neo4j
    is unavailable. Raises CaptureError and sqlite3.Error (the store).

    Idle, it asks for new transactions every ``idle_s`` (a rollback's pause waits for the last ones)
    and whether capture is still on every ``capture_check_s``."""
    driver = neo4j.GraphDatabase.driver(settings.uri, auth=settings.auth(), notifications_min_severity="OFF")
    changelog = changelog_for(driver, settings.database, model)
    conn = store_conn(db)
    down_since: float | None = None
    checked_at = -capture_check_s
    try:
        while not stop():
            try:
                done = step(conn, changelog, model, embed)
                finished = False
                if done.position is None and time.monotonic() - checked_at >= capture_check_s:
                    checked_at = time.monotonic()
                    _prune_applied(conn, changelog)
                    # Asked after an empty step: capture is off only once everything captured was applied.
                    finished = not changelog.capturing()
            except _UNAVAILABLE as exc:
                if down_since is None:
                    log(f"reverse: Neo4j at {settings.uri} unavailable ({exc}); retrying")
                    down_since = time.monotonic()
                time.sleep(1.0)
                continue
            if down_since is not None:
                log(f"reverse: Neo4j back after {time.monotonic() - down_since:.1f}s")
                down_since = None
            for line in done.parked:
                log(f"reverse: set aside {line}")
            for line in done.retried:
                log(f"reverse: applied {line}, set aside before (what refused it is gone)")
            if finished:
                return _finished(conn, changelog)
            if done.position is None:
                time.sleep(idle_s)
        return None
    finally:
        conn.close()
        driver.close()


def _prune_applied(conn: sqlite3.Connection, changelog: Changelog) -> None:
    """Prune what the store holds: rows a crash between the store's commit and the prune left behind."""
    stored = read_position(conn, changelog.ns)
    if stored is not None:
        changelog.prune(stored.seq)


def _finished(conn: sqlite3.Connection, changelog: Changelog) -> str:
    """Why the loop ends once capture is off: the label, and the seq the store applied."""
    stored = read_position(conn, changelog.ns)
    applied = 0 if stored is None else stored.seq
    return (
        f"reverse: Neo4j label {changelog.ns} is no longer captured (a rollback finished; the store applied "
        f"Neo4j's changes up to seq {applied} and takes the runtime's writes again); exiting"
    )
