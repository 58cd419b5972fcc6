"""The write pause of a cutover under a live writer: how long the store's writers wait.

Each run: a fresh store (200 entities), capture installed, source + Neo4j sink + Qdrant sink as
daemons on the local stack, a live writer at --rate writes/s, lag under a second, then
``cutover --target hybrid``. Recorded per run: the pause (fence taken -> store refusing writes), each
step's time (the pre-check runs before the fence, while the writer writes), the writes acknowledged
and refused, the load average, and whether a full field-by-field validation afterwards found the
destinations equal to the store. Summary: p50, p99 and max of the pause over the runs.

The writer stores deterministic stand-in vectors with the model's name, so the Qdrant sink reuses
them (as it reuses real ones when the text matches) and the bench measures the pipeline, not the
model. Needs the local stack (replicator stack up).
Usage: .venv/bin/python bench/cutover_pause.py [--runs 10] [--rate 200] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from neo4j import GraphDatabase

from replicator.capture.install import install
from replicator.cutover import config, cutover
from replicator.cutover.targets import Neo4jTarget, QdrantTarget
from replicator.demo.daemons import Pipeline, PipelineConfig, free_port
from replicator.demo.demo import LiveWriter, local_stack_neo4j, seed_store
from replicator.store.schema import TABLES
from replicator.testing.workload import Workload, hash_vector
from replicator.testing.writer import MemoryWriter
from replicator.transport.kafka import delete_topic
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import change_topics, dlq_topic, positions_topic
from replicator.validation.validate import validate_store


def _one(workdir: Path, rate: float, max_pause_s: float) -> dict[str, Any]:
    kafka, graph = KafkaSettings.from_env(), local_stack_neo4j()  # the local stack's password unless the env names one
    tag = uuid.uuid4().hex[:8]
    db, caxton = workdir / "memory.db", workdir / "caxton.yaml"
    caxton.write_text(config.sample_config(str(db)))
    cfg = PipelineConfig(
        db=db, workdir=workdir, bootstrap_servers=kafka.bootstrap_servers, topic_prefix=f"bench{tag}.caxton.memory",
        neo4j=graph, entity_label=f"Bench_{tag}", position_label=f"BenchPosition_{tag}",
        tombstone_label=f"BenchTombstone_{tag}", neo4j_group=f"bench{tag}-neo4j", qdrant_group=f"bench{tag}-qdrant",
        source_metrics_port=free_port(), neo4j_metrics_port=free_port(), qdrant_metrics_port=free_port(),
    )  # fmt: skip
    opts = cfg.target_options()
    seed_store(db, 200, hash_vector)
    install(db)
    pipeline = Pipeline(cfg)
    writer = LiveWriter(Workload(MemoryWriter(db), seed=3, vectorize=hash_vector), rate)
    writer.workload.counter = 10_000_000
    try:
        pipeline.start()
        pipeline.wait_ready()
        writer.start()
        targets: list[Neo4jTarget | QdrantTarget] = [Neo4jTarget(opts), QdrantTarget(opts)]

        def near_zero() -> bool:
            now_ms = time.time_ns() // 1_000_000
            positions = [t.position() for t in targets]
            marks = [p.watermark() if p else None for p in positions]
            return all(m is not None and now_ms - m.ts_ms < 1000 for m in marks)

        if pipeline.wait_for(near_zero, 120):
            time.sleep(3)  # a few seconds of steady replication under the writer
            load = os.getloadavg()[0]
            plan = cutover.CutoverPlan(db=db, config=caxton, target="hybrid", max_pause_s=max_pause_s)
            report = cutover.run(plan, targets)
        else:  # not a cutover: nothing was fenced; recorded, never dropped
            load = os.getloadavg()[0]
            late = "the sinks did not get within 1 s of the writer in 120 s"
            report = cutover.CutoverReport(target="hybrid", ok=False, aborted_at="catch-up", reason=late)
        time.sleep(0.5)
        writer.stop()
        for target in targets:
            target.close()
    finally:
        writer.stop()
        pipeline.stop()
    problems = validate_store(db, opts, full=True, search=False) if report.ok else ["aborted"]
    with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        for label in (cfg.entity_label, cfg.position_label, cfg.tombstone_label):
            driver.execute_query(f"MATCH (n:`{label}`) DETACH DELETE n")
    topics = [*change_topics(cfg.topic_prefix, TABLES), positions_topic(cfg.topic_prefix), dlq_topic(cfg.topic_prefix)]
    for topic in topics:
        delete_topic(kafka, topic)
    return {
        "ok": report.ok,
        "reason": report.reason,
        "pause_ms": None if report.pause_s is None else round(report.pause_s * 1000, 1),
        "drain_ms": round(report.steps_s.get("drain", 0) * 1000, 1),
        "steps_ms": {step: round(seconds * 1000, 1) for step, seconds in report.steps_s.items()},
        "final_seq": report.final_seq,
        "acknowledged": writer.acknowledged,
        "refused": writer.refused,
        "other_errors": len(writer.other_errors),
        "load_avg_1m": round(load, 2),
        "destinations_equal_store": problems == [],
        "problems": problems[:5] if report.ok else [],
    }


def _commit() -> str:
    git = ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"]
    return subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip()


def _p99(values: list[float]) -> float | None:
    """The 99th percentile, interpolated between order statistics (over 10 runs: near the max)."""
    if len(values) < 2:
        return values[0] if values else None
    return round(statistics.quantiles(values, n=100, method="inclusive")[98], 1)


def _summary(args: argparse.Namespace, runs: list[dict[str, Any]]) -> dict[str, Any]:
    pauses = [r["pause_ms"] for r in runs if r["ok"] and r["pause_ms"] is not None]
    return {
        "command": f".venv/bin/python bench/cutover_pause.py --runs {args.runs} --rate {args.rate:g}",
        "commit": _commit(),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {platform.system()}, {os.cpu_count()} cores shared",
        "rate_writes_per_s": args.rate,
        "runs": runs,
        "cut_over": len(pauses),
        "pause_ms_p50": statistics.median(pauses) if pauses else None,
        "pause_ms_p99": _p99(pauses),
        "pause_ms_max": max(pauses) if pauses else None,
        "all_ok": all(r["ok"] and r["destinations_equal_store"] and not r["other_errors"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="live writer's writes per second")
    parser.add_argument("--max-pause", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cutover_pause.json")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            run = _one(Path(tmp), args.rate, args.max_pause)
        print(f"run {i + 1}: {run}", flush=True)
        runs.append(run)
        result = _summary(args, runs)
        args.out.write_text(json.dumps(result, indent=2) + "\n")  # after every run: a long bench keeps what it did
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
