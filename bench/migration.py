"""The whole migration (issue 14, item 4): from ``replicator source install`` to a completed cutover,
side by side with the seed guide's blue-green path, against the same servers.

Replicator's path, timed step by step, each process's peak memory (``VmHWM`` of the daemons just
before they stop, ``ru_maxrss`` of the one-shot commands from ``wait4``):
1. ``replicator source install`` (triggers and changelog);
2. the source snapshots the store, the Neo4j and Qdrant sinks apply it (daemons, local Kafka/Neo4j,
   Qdrant local mode), until both watermarks reach the store's head;
3. ``cutover --target hybrid`` (its pre-check compares every row field by field, then the fence,
   drain, counts and switch), in its own process.

The blue-green path of the seed guide (export, import, validate), timed the same way: ``replicator
export --with-embeddings``, ``replicator import --backend neo4j`` and ``--backend qdrant`` (the seed's
tools, through the sinks' own destinations), then ``validate --full --no-search`` of both backends.
``--blue-green-tree`` runs those tools from another checkout instead.

The store: ``--entities`` entities, ``--embeddings`` of them with a 384-d vector, ``--relations``
relations, built with raw sqlite3 (not timed: it stands for the user's store). The Qdrant sink reuses
the store's vectors (its model's name, text unchanged), as for a real store. It runs with one large
batch (``--qdrant-batch``/``--qdrant-batch-age-ms``): the snapshot publishes every entity before the
embeddings, and a sink batch that holds an entity without its stored vector embeds it with the model
(the default 1000 events / 200 ms: 2K entities took 125 s instead of 9 s on this machine). The
complete watermark step (the heartbeat after the snapshot) flushes that batch at once. Labels,
collection and topics are unique to the run and removed after.

Usage: .venv/bin/python bench/migration.py [--entities 100000] [--relations 1000000]
       [--embeddings 100000] [--out bench/results/migration.json] [--replicator-only]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from neo4j import GraphDatabase

from replicator.capture.triggers import head_seq
from replicator.cutover import config, cutover
from replicator.cutover.targets import Neo4jTarget, QdrantTarget
from replicator.demo.daemons import Pipeline, PipelineConfig, free_ports
from replicator.demo.demo import local_stack_neo4j
from replicator.sinks.neo4j.model import GraphModel
from replicator.store.schema import DDL, TABLES, WRITER_PRAGMAS, pack_vector
from replicator.transport.kafka import delete_topic
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import change_topics, dlq_topic, positions_topic

REPLICATOR = [sys.executable, "-m", "replicator"]


def build_store(path: Path, entities: int, relations: int, embeddings: int) -> dict[str, int]:
    """A store as Caxton's writer leaves it (raw sqlite3, one transaction); no capture installed."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in WRITER_PRAGMAS:
        conn.execute(pragma)
    conn.executescript(DDL)
    rng = random.Random(7)
    observations = json.dumps(["works on the migration", "prefers short answers", "met on 2026-11-02"])
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO entities (id, name, entity_type, observations, created_at, updated_at, metadata)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        ((i, f"entity {i}", "concept", observations, i, i, '{"source": "bench"}') for i in range(1, entities + 1)),
    )
    vectors = [pack_vector([rng.uniform(-1, 1) for _ in range(384)]) for _ in range(64)]
    conn.executemany(
        "INSERT INTO embeddings (entity_id, embedding, created_at) VALUES (?, ?, ?)",
        ((i, vectors[i % len(vectors)], i) for i in range(1, min(embeddings, entities) + 1)),
    )
    per = max(1, -(-relations // entities))
    conn.executemany(
        "INSERT INTO relations (from_entity_id, to_entity_id, relation_type, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?)",
        itertools.islice(
            ((src, (src + k) % entities + 1, ("relates_to", "knows", "works_with")[k % 3], src, src)
             for src in range(1, entities + 1) for k in range(1, per + 1)),
            relations,
        ),
    )  # fmt: skip
    conn.execute("COMMIT")
    counts = {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}
    conn.close()
    return counts


def _config(workdir: Path, tag: str, ports: list[int]) -> PipelineConfig:
    kafka = KafkaSettings.from_env()
    return PipelineConfig(
        db=workdir / "memory.db", workdir=workdir, bootstrap_servers=kafka.bootstrap_servers,
        topic_prefix=f"mig{tag}.caxton.memory", neo4j=local_stack_neo4j(), entity_label=f"Mig_{tag}",
        position_label=f"MigPosition_{tag}", tombstone_label=f"MigTombstone_{tag}", neo4j_sink=f"mig{tag}-neo4j",
        neo4j_group=f"mig{tag}-neo4j", qdrant_sink=f"mig{tag}-qdrant", qdrant_group=f"mig{tag}-qdrant",
        collection=f"mig_{tag}", source_metrics_port=ports[0], neo4j_metrics_port=ports[1],
        qdrant_metrics_port=ports[2],
    )  # fmt: skip


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Run a command to its end: seconds, peak RSS (MB, from wait4), exit code, last output lines."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        environ = {**os.environ, **(env or {})}
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        tail = out.read().decode(errors="replace").splitlines()[-5:]
    return {
        "seconds": round(time.monotonic() - started, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "exit": proc.returncode,
        "output_tail": tail,
    }


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def wait_applied(cfg: PipelineConfig, pipeline: Pipeline, head: int, timeout_s: float) -> float:
    """Seconds until both sinks' watermarks reach ``head`` (everything the snapshot read applied)."""
    started = time.monotonic()
    opts = cfg.target_options()
    targets: list[Neo4jTarget | QdrantTarget] = [Neo4jTarget(opts), QdrantTarget(opts)]

    def applied() -> bool:
        for target in targets:
            try:
                position = target.position()
            except Exception:  # a sink still starting: not yet
                return False
            mark = position.watermark() if position is not None else None
            if mark is None or mark.seq < head:
                return False
        return True

    try:
        if not pipeline.wait_for(applied, timeout_s):
            raise RuntimeError(f"the sinks did not apply the snapshot within {timeout_s:g}s")
    finally:
        for target in targets:
            target.close()
    return round(time.monotonic() - started, 2)


def run_cutover(spec: Path) -> None:
    """The cutover, in its own process (``--cutover-child``): its report as JSON on stdout."""
    args = json.loads(spec.read_text())
    cfg = _config(Path(args["workdir"]), args["tag"], args["ports"])
    opts = cfg.target_options()
    targets: list[Neo4jTarget | QdrantTarget] = [Neo4jTarget(opts), QdrantTarget(opts)]
    plan = cutover.CutoverPlan(db=cfg.db, config=cfg.workdir / "caxton.yaml", target="hybrid", max_pause_s=5.0)
    report = cutover.run(plan, targets)
    for target in targets:
        target.close()
    print("REPORT " + json.dumps(asdict(report)))


def replicator_path(cfg: PipelineConfig, tag: str, ports: list[int], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"install": timed([*REPLICATOR, "source", "install", "--db", str(cfg.db)])}
    head = head_seq_of(cfg.db)
    pipeline = Pipeline(cfg)
    qdrant_batch = ["--batch-size", str(args.qdrant_batch), "--batch-age-ms", str(args.qdrant_batch_age_ms)]
    pipeline.daemons["qdrant"].argv.extend(qdrant_batch)
    out["qdrant_sink_flags"] = " ".join(qdrant_batch)
    started = time.monotonic()
    try:
        pipeline.start()
        pipeline.wait_ready(120)
        out["snapshot_and_apply_s"] = wait_applied(cfg, pipeline, head, args.timeout)
        spec = cfg.workdir / "cutover.json"
        spec.write_text(json.dumps({"workdir": str(cfg.workdir), "tag": tag, "ports": ports}))
        run = timed([sys.executable, __file__, "--cutover-child", str(spec)])
        line = next((x for x in run.pop("output_tail") if x.startswith("REPORT ")), None)
        report: dict[str, Any] = json.loads(line[len("REPORT ") :]) if line else {"ok": False, "reason": "no report"}
        out["cutover"] = {**run, "ok": report["ok"], "reason": report.get("reason"),
                          "pause_ms": None if report.get("pause_s") is None else round(report["pause_s"] * 1000, 1),
                          "steps_s": {k: round(v, 3) for k, v in report.get("steps_s", {}).items()},
                          "precheck_s": {k: round(v, 3) for k, v in report.get("precheck_s", {}).items()}}  # fmt: skip
        out["peak_rss_mb"] = {name: peak_rss_mb(d.process.pid) for name, d in pipeline.daemons.items() if d.process}
        out["peak_rss_mb"]["cutover"] = run["peak_rss_mb"]
        out["total_s"] = round(time.monotonic() - started + out["install"]["seconds"], 2)
    finally:
        pipeline.stop()
    return out


def head_seq_of(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return head_seq(conn)
    finally:
        conn.close()


def blue_green_path(cfg: PipelineConfig, tag: str, tree: Path | None) -> dict[str, Any]:
    """The seed guide's path: export, import into Neo4j and Qdrant, validate both, with this tree's tools
    (or, with ``tree``, a checkout's: run from it, so its package wins)."""
    env = {"REPLICATOR_NEO4J_PASSWORD": cfg.neo4j.password or ""}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    tools = REPLICATOR
    backup = cfg.workdir / "backup.json"
    out: dict[str, Any] = {"tools": "this tree" if tree is None else f"{tree} (git {_git_head(tree)})"}
    out["export"] = timed([*tools, "export", "--db", str(cfg.db), "--with-embeddings", "-o", str(backup)], env, tree)
    out["export"]["bytes"] = backup.stat().st_size if backup.exists() else None
    graph = ["--neo4j-uri", cfg.neo4j.uri, "--entity-label", f"BlueGreen_{tag}"]
    vectors = ["--qdrant-path", str(cfg.workdir / "qdrant-bluegreen"), "--collection", f"bluegreen_{tag}"]
    out["import_into"] = "Neo4j and Qdrant (import --backend)"
    out["import"] = {
        "neo4j": timed([*tools, "import", "--backend", "neo4j", "-i", str(backup), *graph], env, tree),
        "qdrant": timed([*tools, "import", "--backend", "qdrant", "-i", str(backup), *vectors], env, tree),
    }
    check = ["validate", "--target", "hybrid", "--db", str(cfg.db), "--full", "--no-search", *graph, *vectors]
    out["validate"] = {**timed([*tools, *check], env, tree), "what": "validate --full --no-search, both backends"}
    seconds = out["export"]["seconds"] + sum(step["seconds"] for step in out["import"].values())
    out["total_s"] = round(seconds + out["validate"]["seconds"], 2)
    return out


def _git_head(tree: Path) -> str:
    git = ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"]
    return subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip()


def clean_up(cfg: PipelineConfig, tag: str) -> None:
    """Remove the run's Neo4j nodes (in batches: a million relationships) and its topics."""
    graph = cfg.neo4j
    with GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver, driver.session(database=graph.database) as s:
        for label in (cfg.entity_label, cfg.position_label, cfg.tombstone_label, f"BlueGreen_{tag}"):
            s.run(f"MATCH (n:`{label}`) CALL {{ WITH n DETACH DELETE n }} IN TRANSACTIONS OF 2000 ROWS").consume()
        # The blue-green import's position and owner nodes (default position label, named by its label).
        s.run(f"MATCH (p:`{GraphModel().position_label}`) WHERE p.sink ENDS WITH $ns OR p.owner = $ns DETACH DELETE p",
              ns=f"BlueGreen_{tag}").consume()  # fmt: skip
    kafka = KafkaSettings.from_env()
    prefix = cfg.topic_prefix
    for topic in [*change_topics(prefix, ("entities", "relations", "embeddings")), positions_topic(prefix),
                  dlq_topic(prefix)]:  # fmt: skip
        try:
            delete_topic(kafka, topic)
        except Exception as exc:  # reported, never hides the figures
            print(f"could not delete topic {topic}: {exc}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--relations", type=int, default=1_000_000)
    parser.add_argument("--embeddings", type=int, default=100_000, help="entities with a stored vector")
    parser.add_argument("--timeout", type=float, default=3600.0, help="for the sinks to apply the snapshot (s)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "migration.json")
    parser.add_argument("--qdrant-batch", type=int, default=250_000, help="the Qdrant sink's --batch-size")
    parser.add_argument("--qdrant-batch-age-ms", type=int, default=600_000, help="the Qdrant sink's --batch-age-ms")
    parser.add_argument("--blue-green-tree", type=Path, help="run the seed path's tools from this checkout")
    parser.add_argument("--dir", type=Path, help="work in (and keep) this directory: store, logs, Qdrant data")
    parser.add_argument("--replicator-only", action="store_true",
                        help="leave out the blue-green path (replicator's path measured alone)")  # fmt: skip
    parser.add_argument("--cutover-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cutover_child:
        run_cutover(args.cutover_child)
        return
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="migration-") as tmp:
        workdir = args.dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(3)
        cfg = _config(workdir, tag, ports)
        started = time.monotonic()
        counts = build_store(cfg.db, args.entities, args.relations, args.embeddings)
        built_s = round(time.monotonic() - started, 2)
        (workdir / "caxton.yaml").write_text(config.sample_config(str(cfg.db)))
        try:
            ours = replicator_path(cfg, tag, ports, args)
            theirs = {} if args.replicator_only else blue_green_path(cfg, tag, args.blue_green_tree)
        finally:
            clean_up(cfg, tag)
    result = summary(args, counts, built_s, ours, theirs)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def summary(args: argparse.Namespace, counts: dict[str, int], built_s: float, ours: dict[str, Any],
            theirs: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    entities = counts["entities"]
    per_s = {name: round(entities / path["total_s"], 1) if path.get("total_s") else None
             for name, path in (("replicator", ours), ("blue_green", theirs))}  # fmt: skip
    return {
        "command": f".venv/bin/python bench/migration.py --entities {args.entities} --relations {args.relations} "
        f"--embeddings {args.embeddings} --qdrant-batch {args.qdrant_batch} "
        f"--qdrant-batch-age-ms {args.qdrant_batch_age_ms}"
        + (f" --blue-green-tree {args.blue_green_tree}" if args.blue_green_tree else "")
        + (" --replicator-only" if args.replicator_only else ""),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared; load avg {os.getloadavg()[0]:.1f}",
        "store": counts,
        "store_built_s (not part of either path)": built_s,
        "replicator": ours,
        "blue_green": theirs,
        "entities_per_s_end_to_end": per_s,
        "seed_claim": "bulk imports of 1000+ entities/s",
    }


if __name__ == "__main__":
    main()
