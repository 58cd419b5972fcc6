"""``replicator demo``: the whole product in one command on the local stack.

A sample store gets capture installed; the source and both sinks start; a live writer keeps
writing; lag is shown falling to ~0; the store is cut over to hybrid (Neo4j + Qdrant) while the
writer still writes; the report is printed; everything stops. Blocking.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
from confluent_kafka.admin import AdminClient
from neo4j import GraphDatabase
from neo4j.exceptions import Neo4jError, ServiceUnavailable

from replicator.capture.install import install
from replicator.capture.storefile import sqlite_uri
from replicator.cutover import config, cutover
from replicator.cutover.options import TargetOptions
from replicator.cutover.targets import Neo4jTarget, QdrantTarget
from replicator.demo import mcp_ask
from replicator.demo.daemons import Pipeline, PipelineConfig, free_port
from replicator.embedding import embed, load_model
from replicator.errors import StackError
from replicator.events.values import embedding_text
from replicator.observe import lag
from replicator.sinks.neo4j.model import quote
from replicator.sinks.settings import Neo4jSettings
from replicator.store.schema import count_rows
from replicator.testing.workload import Vectorize, Workload, hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.settings import KafkaSettings
from replicator.validation.validate import validate_store

Echo = Callable[[str], None]


@dataclass
class LiveWriter:
    """A writer thread at a target rate. Counts acknowledged writes and refusals (after the fence)."""

    workload: Workload
    rate_per_s: float
    acknowledged: int = 0
    refused: int = 0
    refusal: str | None = None
    other_errors: list[str] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    resumed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.resumed.set()

    def run(self) -> None:
        gap = 1.0 / self.rate_per_s
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            if not self.resumed.is_set():
                while not self.resumed.wait(0.05) and not self.stop_event.is_set():
                    pass
                next_at = time.monotonic()  # no burst to make up for the pause
                continue
            try:
                self.workload.step()
                self.acknowledged += 1
            except sqlite3.DatabaseError as exc:
                if "memory store moved" in str(exc):
                    self.refused += 1
                    self.refusal = str(exc)
                else:
                    self.other_errors.append(str(exc))
            next_at += gap
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="live-writer", daemon=True)
        self.thread.start()

    def pause(self) -> None:
        """Hold the writes after the current one (until ``resume``)."""
        self.resumed.clear()

    def resume(self) -> None:
        self.resumed.set()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(10)


def check_stack(kafka: KafkaSettings, neo4j: Neo4jSettings) -> None:
    """Raise StackError naming the server that does not answer."""
    admin = AdminClient(kafka.common())
    try:
        admin.list_topics(timeout=5)
    except Exception as exc:
        raise StackError(f"Kafka at {kafka.bootstrap_servers} is not answering: {exc}",
                         hint="start the local stack: replicator stack up") from exc  # fmt: skip
    try:
        with GraphDatabase.driver(neo4j.uri, auth=neo4j.auth(), notifications_min_severity="OFF") as driver:
            driver.verify_connectivity()
    except (Neo4jError, ServiceUnavailable, OSError) as exc:
        raise StackError(f"Neo4j at {neo4j.uri} is not answering: {exc}",
                         hint="start the local stack: replicator stack up") from exc  # fmt: skip


def local_stack_neo4j() -> Neo4jSettings:
    """Neo4j as the environment names it; the demo runs on the local stack, so without a password in
    the environment (REPLICATOR_NEO4J_PASSWORD or _FILE) it uses the local stack's default. No other
    client knows that password."""
    settings = Neo4jSettings.from_env()
    if settings.password is not None:
        return settings
    from replicator.stack.settings import DEFAULT_NEO4J_PASSWORD  # noqa: PLC0415 - the local stack's, demo only

    return dataclasses.replace(settings, password=DEFAULT_NEO4J_PASSWORD)


def _model_vectorize(echo: Echo) -> Vectorize:
    echo("loading the embedding model (all-MiniLM-L6-v2, offline)...")
    model = load_model()
    return lambda text: embed(model, [text])[0]


def seed_store(db: Path, entities: int, vectorize: Vectorize) -> Workload:
    writer = MemoryWriter.create(db)
    workload = Workload(writer, seed=7, vectorize=vectorize)
    for _ in range(entities):
        workload.create()
    for _ in range(entities):
        workload.step()
    return workload


def _clear_demo_graph(neo4j: Neo4jSettings, labels: tuple[str, ...]) -> None:
    with GraphDatabase.driver(neo4j.uri, auth=neo4j.auth(), notifications_min_severity="OFF") as driver:
        for label in labels:
            driver.execute_query(f"MATCH (n:{quote(label)}) DETACH DELETE n", database_=neo4j.database)


def run_demo(
    workdir: Path,
    *,
    entities: int = 200,
    rate_per_s: float = 50.0,
    max_pause_s: float = 3.0,
    real_model: bool = True,
    echo: Echo = click.echo,
    kafka: KafkaSettings | None = None,
    neo4j: Neo4jSettings | None = None,
    layout: str = "caxton",
) -> cutover.CutoverReport:
    """Run the demo in ``workdir`` (created), the sinks writing ``layout`` (docs/layouts.md; with mcp
    it ends by asking both MCP servers about the migrated memory). Returns the cutover report.
    Raises ReplicatorError (McpUnavailable: an MCP server's environment is missing)."""
    if layout == "mcp":
        for env in ("neo4j-memory", "server-qdrant"):  # refused before a minute of work, not after
            mcp_ask.python_of(env)
    kafka = kafka or KafkaSettings.from_env()
    neo4j = neo4j or local_stack_neo4j()
    check_stack(kafka, neo4j)
    cfg = _demo_config(workdir, kafka, neo4j, layout)
    db, caxton = cfg.db, workdir / "caxton.yaml"
    vectorize = _model_vectorize(echo) if real_model else hash_vector
    echo(f"1/6 sample store {db}: {entities} entities with embeddings, relations, edits")
    workload = seed_store(db, entities, vectorize)
    state = install(db)
    echo(f"2/6 capture installed (store {state.store_id}, changelog head seq {state.head_seq})")

    pipeline = Pipeline(cfg)
    writer = LiveWriter(Workload(MemoryWriter(db), seed=11, vectorize=vectorize), rate_per_s)
    writer.workload.counter = workload.counter + 1_000_000  # new names never collide with the seed's
    opts = cfg.target_options()
    try:
        echo(f"3/6 starting source, Neo4j sink and Qdrant sink (logs in {workdir / 'logs'}); live writer at "
             f"{rate_per_s:g} writes/s")  # fmt: skip
        pipeline.start()
        pipeline.wait_ready()
        writer.start()
        _show_lag_until_caught_up(db, opts, pipeline, echo)
        echo("5/6 cutover to hybrid while the writer writes")
        # Qdrant local mode lets one process open the storage and the sink holds it: the Qdrant
        # target asks the sink's endpoint (opts.qdrant_endpoint) instead.
        targets: list[Neo4jTarget | QdrantTarget] = [Neo4jTarget(opts), QdrantTarget(opts)]
        report = cutover.run(
            cutover.CutoverPlan(db=db, config=caxton, target="hybrid", max_pause_s=max_pause_s), targets, log=echo
        )
        time.sleep(1.0)  # let writes queued behind the fence meet the refusal
        writer.stop()
        for target in targets:
            target.close()
    finally:
        writer.stop()
        codes = pipeline.stop()
    _report(report, writer, db, codes, opts=opts, echo=echo)
    if report.ok and layout == "mcp":
        ask_the_mcp_servers(cfg, echo)
    return report


def ask_the_mcp_servers(cfg: PipelineConfig, echo: Echo) -> None:
    """The migrated memory through the MCP servers' own code: an entity's name to mcp-neo4j-memory,
    a question with its words to mcp-server-qdrant (the sinks have stopped: local mode is free)."""
    conn = sqlite3.connect(sqlite_uri(cfg.db, mode="ro"), uri=True)
    try:
        name, entity_type, observations = conn.execute(
            "SELECT name, entity_type, observations FROM entities ORDER BY id DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    echo(f"mcp: what do the servers know about {name!r}?")
    by_name, whole = mcp_ask.neo4j_memory(cfg.neo4j, [
        {"tool": "find_memories_by_name", "args": {"names": [name]}}, {"tool": "read_graph"},
    ])  # fmt: skip
    for tool, answer in (("find_memories_by_name", by_name), ("read_graph", whole)):
        if "error" in answer:
            echo(f"  mcp-neo4j-memory {tool}: FAILED {answer['error']}")
            continue
        ok = answer["ok"]
        echo(f"  mcp-neo4j-memory {tool}: {len(ok['entities'])} memories, {len(ok['relations'])} relations"
             + (f"; {ok['entities'][0]}" if tool == "find_memories_by_name" and ok["entities"] else ""))  # fmt: skip
    question = embedding_text(name, entity_type, observations)  # the entity's own text: it should come first
    [found] = mcp_ask.qdrant_search(cfg.collection, [question], path=cfg.qdrant_dir, limit=3)
    if "error" in found:
        echo(f"  mcp-server-qdrant search: FAILED {found['error']}")
        return
    for rank, entry in enumerate(found["ok"], 1):
        echo(f"  mcp-server-qdrant search #{rank}: {entry['content']!r} {entry['metadata']}")


def _demo_config(workdir: Path, kafka: KafkaSettings, neo4j: Neo4jSettings, layout: str) -> PipelineConfig:
    """The demo's pipeline in ``workdir`` (created, with a sample caxton.yaml): its own topics, labels
    and groups, named by the time it starts; the demo's labels emptied first (only those: a user's
    real graph in the same database is never touched)."""
    workdir.mkdir(parents=True, exist_ok=True)
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    db = workdir / "memory.db"
    (workdir / "caxton.yaml").write_text(config.sample_config(str(db)))
    cfg = PipelineConfig(
        db=db, workdir=workdir, bootstrap_servers=kafka.bootstrap_servers, topic_prefix=f"demo-{run_id}.caxton.memory",
        neo4j=neo4j, entity_label="DemoEntity", position_label="DemoReplicatorPosition",
        tombstone_label="DemoReplicatorTombstone", layout=layout,
        neo4j_group=f"demo-{run_id}-neo4j", qdrant_group=f"demo-{run_id}-qdrant",
        source_metrics_port=free_port(), neo4j_metrics_port=free_port(), qdrant_metrics_port=free_port(),
    )  # fmt: skip
    _clear_demo_graph(neo4j, (cfg.entity_label, cfg.position_label, cfg.tombstone_label))
    return cfg


def _report(report: cutover.CutoverReport, writer: LiveWriter, db: Path, codes: object, *, opts: TargetOptions,
            echo: Echo) -> None:  # fmt: skip
    caxton = db.parent / "caxton.yaml"
    echo("6/6 report")
    echo(report.text())
    echo(f"  live writer   {writer.acknowledged} writes acknowledged, {writer.refused} refused after the fence")
    if writer.refusal:
        echo(f"  refusal       {writer.refusal!r}")
    echo(f"  caxton.yaml   memory.backend = {config.read_backend(caxton)}")
    echo(f"  daemons       stopped with exit codes {codes}")
    if report.ok:
        # With the sinks stopped, Qdrant's local storage is free to open: compare everything.
        problems = validate_store(db, opts, full=True, search=False)
        counts = _store_counts(db)
        verdict = "equal" if not problems else f"{len(problems)} problems: {problems[:3]}"
        echo(f"  validation    store vs Neo4j and Qdrant, {counts[0]} entities and {counts[1]} relations "
             f"field by field: {verdict}")  # fmt: skip


def _store_counts(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(sqlite_uri(db, mode="ro"), uri=True)
    try:
        counts = count_rows(conn, ("entities", "relations"))
        return counts["entities"], counts["relations"]
    finally:
        conn.close()


def _lag_line(sink: lag.SinkLag) -> str:
    status = sink.status if sink.updated_at_ms is not None else "starting"
    behind = "-" if sink.lag_seq is None else str(sink.lag_seq)
    return f"{sink.sink} {status:<8} lag {behind:>4} seq / {sink.lag_events:>4} events / {sink.lag_seconds or 0:.1f}s"


def _show_lag_until_caught_up(db: Path, opts: TargetOptions, pipeline: Pipeline, echo: Echo) -> None:
    echo("4/6 lag (seq behind the store's head, per sink) until it is near zero")
    previous = None
    steady = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pipeline.check_alive()
        report = lag.sample(db, opts, ("neo4j", "qdrant"), previous, elapsed_s=1.0)
        echo(f"  head seq {report.source.head_seq:>6} | " + " | ".join(_lag_line(s) for s in report.sinks))
        # Under a live writer the head is always some seqs ahead: judge by time, twice in a row.
        near_zero = all(s.lag_seconds is not None and s.lag_seconds <= 1.0 for s in report.sinks)
        steady = steady + 1 if near_zero else 0
        if steady >= 2:
            return
        previous = report
        time.sleep(1.0)
    raise StackError("the sinks did not catch up within 180 s", hint=f"see the logs in {opts}")


__all__ = ["LiveWriter", "lag", "run_demo"]
