"""The write pause of a rollback from Neo4j under an agent writing to Neo4j: how long its writers wait.

Each run: a fresh store (200 entities), capture installed, source + Neo4j sink + Qdrant sink as
daemons on the local stack (whose Neo4j runs the changelog plugin), a live writer on the store, a
live cutover to hybrid as `replicator cutover` does it (capture on in Neo4j before the fence, then
`replicator reverse run` started in the background), the writer on the store stopped (refused),
agents writing to Neo4j through Cypher (``--cypher-threads`` at ``--cypher-rate`` each: ~50 writes/s
by default) and, with ``--layout mcp``, through mcp-neo4j-memory's own tools (``--mcp-agents``
sessions at ``--mcp-rate`` each; the mcp layout is cut over to Neo4j alone, as its reverse test
does), the writers of the reverse-rollback tests (replicator/testing/), then `rollback` under them.
Recorded per run: the pause (Neo4j fenced -> the store takes writes again), the drain (fence -> the
store applied Neo4j's last seq), the transactions the store was behind at the fence, the switch
back, each kind of writer's writes acknowledged, refused and lost to a concurrent delete and its
achieved rate, whether the reverse process ended by itself, the load average, and whether the store
then equals the graph field by field (entities, relations) with an embedding for every entity.
Summary: p50, p99, max of the pause.

Needs the local stack (replicator stack up). Usage:
.venv/bin/python bench/rollback_pause.py [--runs 5] [--out FILE]
.venv/bin/python bench/rollback_pause.py --layout mcp --mcp-agents 4 --cypher-threads 2 --cypher-rate 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import neo4j

from replicator.capture.install import install
from replicator.cutover import config, cutover, rollback, state
from replicator.cutover.targets import Neo4jTarget, QdrantTarget
from replicator.demo import mcp_ask
from replicator.demo.daemons import Pipeline, PipelineConfig, free_port
from replicator.demo.demo import LiveWriter, local_stack_neo4j, seed_store
from replicator.reverse import process
from replicator.reverse.changelog import Changelog
from replicator.reverse.control import Reverse
from replicator.sinks.neo4j.reader import GraphReader
from replicator.sinks.settings import Neo4jSettings
from replicator.store.schema import TABLES
from replicator.testing.cypher_writer import CypherWriter, McpCypherWriter
from replicator.testing.mcp_agent import McpAgent
from replicator.testing.paced import Writers
from replicator.testing.workload import Workload, hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.kafka import delete_topic
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import change_topics, dlq_topic, positions_topic
from replicator.validation.diff import compare_entities, compare_relations
from replicator.validation.store import StoreReader


class Graph:
    """One label of the local stack's Neo4j, for the Cypher writer and the comparison."""

    def __init__(self, driver: neo4j.Driver, label: str) -> None:
        self.driver, self.label = driver, label

    def q(self, cypher: str, **params: object) -> list[neo4j.Record]:
        return list(self.driver.execute_query(cypher, parameters_=params).records)


class TimedReverse(Reverse):
    """The rollback's reverse control, noting the seq applied at the fence and when the drain ended."""

    fenced_at = drained_at = 0.0
    final = applied_at_fence = -1

    def fence(self, message: str) -> int:
        self.final = super().fence(message)
        self.fenced_at = time.monotonic()
        self.applied_at_fence = super().applied()
        return self.final

    def applied(self) -> int:
        seq = super().applied()
        if seq >= self.final >= 0 and not self.drained_at:
            self.drained_at = time.monotonic()
        return seq


def _wait_applying(log: Path, pid: int, timeout_s: float = 600) -> float:
    """Seconds until ``reverse run`` says it applies (the model loaded). Raises RuntimeError."""
    started = time.monotonic()
    while "reverse: applying" not in (log.read_text() if log.exists() else ""):
        if not state.pid_alive(pid) or time.monotonic() - started > timeout_s:
            raise RuntimeError(f"reverse run did not start applying:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return time.monotonic() - started


def _ended_by_itself(pid: int, within_s: float) -> bool:
    """Whether the reverse process exits within ``within_s``; it is stopped (SIGTERM) otherwise."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            return not state.pid_alive(pid)
        time.sleep(0.1)
    os.killpg(pid, signal.SIGTERM)
    os.waitpid(pid, 0)
    return False


def _compare(db: Path, graph: Graph, cfg: PipelineConfig) -> list[str]:
    model = cfg.target_options().graph_model
    with StoreReader(db) as store, GraphReader(model, graph.q) as dest:
        mine, theirs = store.read(embeddings=True), dest.read()
    problems = [str(p) for p in compare_entities("neo4j", mine, theirs) + compare_relations("neo4j", mine, theirs)]
    missing = set(mine.entities) - set(mine.embeddings)
    return problems + ([f"{len(missing)} entities without an embedding"] if missing else [])


def _cutover(
    db: Path, caxton: Path, pipeline: Pipeline, rate: float, target: str
) -> tuple[cutover.CutoverReport, LiveWriter]:
    """As `replicator cutover --target TARGET` (hybrid or neo4j) does it, under a live writer on the store."""
    opts = pipeline.config.target_options()
    writer = LiveWriter(Workload(MemoryWriter(db), seed=3, vectorize=hash_vector), rate)
    writer.workload.counter = 10_000_000
    writer.start()
    targets: list[Neo4jTarget | QdrantTarget] = [Neo4jTarget(opts)]
    targets += [QdrantTarget(opts)] if target == "hybrid" else []
    try:

        def near_zero() -> bool:
            now_ms = time.time_ns() // 1_000_000
            marks = [p.watermark() if p else None for p in (t.position() for t in targets)]
            return all(m is not None and now_ms - m.ts_ms < 1000 for m in marks)

        if not pipeline.wait_for(near_zero, 120):
            late = "the sinks did not get within 1 s of the writer in 120 s"
            return cutover.CutoverReport(target=target, ok=False, aborted_at="catch-up", reason=late), writer
        process.prepare(db, opts.neo4j, opts.graph_model)
        # The cutover is the setup, not what is measured: as the live rollback test, it may hold the
        # store's writers longer on a loaded machine rather than abort the run.
        plan = cutover.CutoverPlan(db=db, config=caxton, target=target, max_pause_s=10.0, max_lag=1_000_000)
        return cutover.run(plan, targets), writer
    finally:
        time.sleep(0.5)
        writer.stop()
        for made in targets:
            made.close()


def _writers(args: argparse.Namespace, graph: Graph, neo: Neo4jSettings, tag: str) -> tuple[Writers, Writers]:
    """The agents writing to Neo4j: Cypher threads and mcp-neo4j-memory sessions. The MCP agents write
    only the entities they create (named for this run): the shared stack's Neo4j holds other runs'
    ``:Memory`` nodes, and the server's tools match them by name alone."""
    kind = McpCypherWriter if args.layout == "mcp" else CypherWriter
    cypher = Writers(*(kind(graph, 7 + i, args.cypher_rate) for i in range(args.cypher_threads)))
    agents = Writers(*(McpAgent(mcp_ask.Neo4jMemorySession(neo), [], 100 + i, args.mcp_rate, prefix=f"agent {tag}")
                       for i in range(args.mcp_agents)))  # fmt: skip
    return cypher, agents


def _written(writers: Writers) -> dict[str, Any]:
    return {"writes": writers.done(), "rate_per_s": round(writers.rate(), 1), "refused": writers.refused(),
            "lost_races": writers.lost_races(), "failures": writers.failures()[:3]}  # fmt: skip


def _rollback(db: Path, neo: Neo4jSettings, graph: Graph, writers: tuple[Writers, Writers],
              args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """Rollback under the agents writing to Neo4j, once each kind made ``args.writes`` writes."""
    both = Writers(*writers[0].all, *writers[1].all)
    both.start()
    for kind in writers:
        if kind.all:
            kind.wait_for(args.writes, 120)
    steady = both.rate()  # before the rollback competes for the CPU
    control = TimedReverse(db, neo, graph.label)
    load = os.getloadavg()[0]
    try:
        lines = rollback.rollback(db, None, divergence=None, reverse=control, max_pause_s=args.max_pause)
        error = None
    except Exception as exc:  # recorded, never dropped: an abort is a result
        lines, error = [], f"{type(exc).__name__}: {exc}"
    finally:
        time.sleep(0.5)
        both.stop()
        control.close()
    pause = next((line for line in lines if line.startswith("write pause")), None)
    return {
        "ok": error is None,
        "error": error,
        "pause_ms": None if pause is None else float(pause.split()[2]),
        "drain_ms": round(1000 * (control.drained_at - control.fenced_at), 1) if control.drained_at else None,
        "behind_at_fence": control.final - control.applied_at_fence,
        "final_seq": control.final,
        "writes_per_s": round(both.rate(), 1),
        "writes_per_s_before_rollback": round(steady, 1),
        "cypher": _written(writers[0]),
        "mcp_neo4j_memory": _written(writers[1]),
        "load_avg_1m": round(load, 2),
    }


def _config(workdir: Path, kafka: KafkaSettings, neo: Neo4jSettings, tag: str, layout: str) -> PipelineConfig:
    db = workdir / "memory.db"
    return PipelineConfig(
        db=db, workdir=workdir, bootstrap_servers=kafka.bootstrap_servers, topic_prefix=f"rb{tag}.caxton.memory",
        neo4j=neo, entity_label=f"Rollback_{tag}", position_label=f"RollbackPosition_{tag}",
        tombstone_label=f"RollbackTombstone_{tag}", neo4j_group=f"rb{tag}-neo4j", qdrant_group=f"rb{tag}-qdrant",
        source_metrics_port=free_port(), neo4j_metrics_port=free_port(), qdrant_metrics_port=free_port(),
        layout=layout,
    )  # fmt: skip


def _one(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    kafka, neo = KafkaSettings.from_env(), local_stack_neo4j()
    tag = uuid.uuid4().hex[:8]
    cfg = _config(workdir, kafka, neo, tag, args.layout)
    db, caxton, opts = cfg.db, workdir / "caxton.yaml", cfg.target_options()
    caxton.write_text(config.sample_config(str(db)))
    seed_store(db, 200, hash_vector)
    install(db)
    pipeline = Pipeline(cfg)
    driver = neo4j.GraphDatabase.driver(neo.uri, auth=neo.auth(), notifications_min_severity="OFF")
    graph = Graph(driver, cfg.entity_label)
    result: dict[str, Any] = {"ok": False}
    pid = None
    target = "neo4j" if args.layout == "mcp" else "hybrid"
    try:
        pipeline.start(*(("source", "neo4j") if target == "neo4j" else ()))
        pipeline.wait_ready()
        report, writer = _cutover(db, caxton, pipeline, args.rate, target)
        paused = None if report.pause_s is None else round(report.pause_s * 1000, 1)
        result["cutover"] = {"ok": report.ok, "reason": report.reason, "acknowledged": writer.acknowledged,
                             "pause_ms": paused}  # fmt: skip
        if report.ok:
            pid, log = process.spawn(db, opts.neo4j, opts.graph_model)
            result["reverse_ready_s"] = round(_wait_applying(log, pid), 1)
            writers = _writers(args, graph, opts.neo4j, tag)
            result.update(_rollback(db, opts.neo4j, graph, writers, args))
            result["reverse_ended_by_itself"] = _ended_by_itself(pid, 10.0)
            pid = None
            result["state"] = state.load(db).state
            problems = _compare(db, graph, cfg)
            result["store_equals_graph"] = problems == []
            result["problems"] = problems[:5]
    finally:
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
        pipeline.stop()
        _cleanup(driver, kafka, cfg, f"agent {tag}")
    return result


def _cleanup(driver: neo4j.Driver, kafka: KafkaSettings, cfg: PipelineConfig, agent_prefix: str) -> None:
    """The run's labels, the MCP agents' nodes (adopted or not) and topics go."""
    Changelog.for_driver(driver, cfg.neo4j.database, cfg.entity_label).disable()
    for label in (cfg.entity_label, cfg.position_label, cfg.tombstone_label):
        driver.execute_query(f"MATCH (n:`{label}`) DETACH DELETE n")
    driver.execute_query("MATCH (n:Memory) WHERE n.name STARTS WITH $p DETACH DELETE n", p=agent_prefix)
    driver.close()
    topics = [*change_topics(cfg.topic_prefix, TABLES), positions_topic(cfg.topic_prefix)]
    for topic in [*topics, dlq_topic(cfg.topic_prefix)]:
        delete_topic(kafka, topic)


def _commit() -> str:
    git = ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"]
    return subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip()


def _p99(values: list[float]) -> float | None:
    """The 99th percentile, interpolated between order statistics (over a few runs: near the max)."""
    if len(values) < 2:
        return values[0] if values else None
    return round(statistics.quantiles(values, n=100, method="inclusive")[98], 1)


def _summary(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    pauses = [r["pause_ms"] for r in runs if r.get("ok") and r.get("pause_ms") is not None]
    rollbacks = [r for r in runs if "store_equals_graph" in r]  # the cutover it sets up succeeded
    return {
        "command": f".venv/bin/python bench/rollback_pause.py --runs {args.runs} --writes {args.writes} "
        f"--layout {args.layout} --cypher-threads {args.cypher_threads} --cypher-rate {args.cypher_rate:g} "
        f"--mcp-agents {args.mcp_agents} --mcp-rate {args.mcp_rate:g}",
        "commit": _commit(),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {platform.system()}, {os.cpu_count()} cores shared",
        "runs": runs,
        "rolled_back": len(pauses),
        "cutover_not_set_up": len(runs) - len(rollbacks),  # a loaded machine: the setup's cutover aborted
        "rollback_aborted": sum(1 for r in rollbacks if not r["ok"]),
        "pause_ms_p50": statistics.median(pauses) if pauses else None,
        "pause_ms_p99": _p99(pauses),
        "pause_ms_max": max(pauses) if pauses else None,
        "writes_per_s": [r["writes_per_s"] for r in rollbacks],  # each run's writers together, as achieved
        "all_equal": bool(rollbacks) and all(r["store_equals_graph"] for r in rollbacks),
    }


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=50.0, help="the store's live writer before the cutover")
    parser.add_argument(
        "--writes", type=int, default=150, help="writes on Neo4j of each kind of agent before the rollback"
    )
    parser.add_argument("--max-pause", type=float, default=15.0)
    parser.add_argument("--layout", choices=["caxton", "mcp"], default="caxton")
    parser.add_argument("--cypher-threads", type=int, default=1, help="agents writing through Cypher")
    parser.add_argument("--cypher-rate", type=float, default=50.0, help="writes/s of each Cypher agent")
    parser.add_argument("--mcp-agents", type=int, default=0, help="mcp-neo4j-memory sessions (--layout mcp)")
    parser.add_argument("--mcp-rate", type=float, default=10.0, help="writes/s of each mcp-neo4j-memory agent")
    parser.add_argument("--out", type=Path, help="default: bench/results/rollback_pause[_mcp].json")
    args = parser.parse_args()
    if args.mcp_agents and args.layout != "mcp":
        parser.error("--mcp-agents needs --layout mcp (mcp-neo4j-memory writes the mcp layout)")
    if args.mcp_agents:
        try:
            mcp_ask.python_of("neo4j-memory")
        except mcp_ask.McpUnavailable as exc:
            parser.error(f"{exc}; {exc.hint}")
    suffix = "_mcp" if args.layout == "mcp" else ""
    args.out = args.out or Path(__file__).parent / "results" / f"rollback_pause{suffix}.json"
    return args


def main() -> None:
    args = _args()
    runs: list[dict[str, Any]] = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            run = _one(Path(tmp), args)
        print(f"run {i + 1}: {run}", flush=True)
        runs.append(run)
        result = _summary(args, runs)
        args.out.write_text(json.dumps(result, indent=2) + "\n")  # after every run: a long bench keeps what it did
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
