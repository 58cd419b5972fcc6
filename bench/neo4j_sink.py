"""Neo4j sink throughput vs a raw batched UNWIND MERGE loop, same server, same run.

    PYTHONPATH=$PWD .venv/bin/python bench/neo4j_sink.py [--entities 10000] [--relations 10000] [--layout mcp]
        [--runs 3] [--out bench/results/neo4j_sink.json]

Produces the events once (stand-in transactional source), then times (a) the sink runner from offset 0
until its watermark covers the last seq and (b) a plain loop of UNWIND MERGE statements writing the
same rows (every property the sink writes, the same relationship types; in the mcp layout the
``:Memory`` label and ``type`` too) in batches of the same size, each under its own labels.

The sink's time is reported twice: from the start of the runner (schema, consumer, group join, then
the stream) and from its partitions being assigned (the stream alone). The raw loop's constraint and
connection are outside its timer, so ``ratio`` (throughput, the figure the README compares) uses the
second; ``ratio_with_startup`` the first. Writes bench/results/neo4j_sink[_<layout>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import neo4j

from replicator.demo.demo import local_stack_neo4j
from replicator.position import SinkPosition
from replicator.sinks.neo4j.applier import read_position
from replicator.sinks.neo4j.destination import Neo4jDestination
from replicator.sinks.neo4j.layout import MCP, MEMORY_LABEL, node_props
from replicator.sinks.neo4j.model import GraphModel, relationship_type
from replicator.sinks.runner import SinkRunner
from replicator.sinks.runner_settings import SinkRunnerSettings
from replicator.sinks.settings import Neo4jSettings
from replicator.store.schema import ENTITY_COLUMNS, RELATION_COLUMNS
from replicator.testing.fake_source import SimulatedStore, TransactionalPublisher
from replicator.transport.kafka import delete_topic
from replicator.transport.settings import KafkaSettings

BATCH = 1000


def _cleanup(driver: neo4j.Driver, labels: list[str]) -> None:
    with driver.session() as session:
        for label in labels:
            query = f"MATCH (n:`{label}`) CALL {{ WITH n DETACH DELETE n }} IN TRANSACTIONS OF 5000 ROWS"
            session.run(query).consume()
        names = [
            r["name"]
            for r in session.run(
                "SHOW CONSTRAINTS YIELD name, labelsOrTypes WHERE any(l IN labelsOrTypes WHERE l IN $l) RETURN name",
                l=labels,
            )
        ]
        for name in names:
            session.run(f"DROP CONSTRAINT `{name}` IF EXISTS").consume()
        names = [
            r["name"]
            for r in session.run(
                "SHOW INDEXES YIELD name, labelsOrTypes, owningConstraint WHERE owningConstraint IS NULL "
                "AND any(l IN labelsOrTypes WHERE l IN $l) RETURN name",
                l=labels,
            )
        ]
        for name in names:
            session.run(f"DROP INDEX `{name}` IF EXISTS").consume()


def _watermark(driver: neo4j.Driver, model: GraphModel) -> int | None:
    """The sink's watermark as stored in Neo4j: everything up to it applied (applied_seq, the highest
    seq applied, is reached as soon as the newest event of any one partition is, long before the others)."""
    return _watermark_of(read_position(driver, "bench", model=model))


def _watermark_of(pos: SinkPosition | None) -> int | None:
    mark = pos.watermark() if pos is not None else None
    return None if mark is None else mark.seq


_ENTITY_PROPS = ENTITY_COLUMNS[1:]
_RELATION_PROPS = tuple(c for c in RELATION_COLUMNS[1:] if c not in ("from_entity_id", "to_entity_id"))


def _raw_loop(driver: neo4j.Driver, label: str, store: SimulatedStore, layout: str) -> float:
    """The baseline: what a hand-written loader does (no seq checks, no tombstones, no position), writing
    the same properties and relationship types the sink writes."""
    driver.execute_query(f"CREATE CONSTRAINT IF NOT EXISTS FOR (n:`{label}`) REQUIRE n.id IS UNIQUE")
    ents = [{"id": i, "props": node_props(layout, {k: e[k] for k in _ENTITY_PROPS})} for i, e in store.entities.items()]
    rels: dict[str, list[dict[str, Any]]] = {}
    for i, r in store.relations.items():
        rels.setdefault(relationship_type(r["relation_type"]), []).append(
            {"id": i, "from": r["from_entity_id"], "to": r["to_entity_id"], "props": {k: r[k] for k in _RELATION_PROPS}}
        )
    memory = f" SET n:`{MEMORY_LABEL}`" if layout == MCP else ""
    started = time.perf_counter()
    for start in range(0, len(ents), BATCH):
        driver.execute_query(
            f"UNWIND $rows AS row MERGE (n:`{label}` {{id: row.id}}) SET n += row.props{memory}",
            rows=ents[start : start + BATCH],
        )
    for rtype, rows in rels.items():
        for start in range(0, len(rows), BATCH):
            driver.execute_query(
                f"UNWIND $rows AS row MATCH (a:`{label}` {{id: row.from}}) MATCH (b:`{label}` {{id: row.to}}) "
                f"MERGE (a)-[r:`{rtype}` {{id: row.id}}]->(b) SET r += row.props",
                rows=rows[start : start + BATCH],
            )
    return time.perf_counter() - started


def _one_run(
    driver: neo4j.Driver,
    *,
    kafka: KafkaSettings,
    graph: Neo4jSettings,
    prefix: str,
    store: SimulatedStore,
    h: str,
    layout: str,
) -> dict[str, float]:
    """The sink from offset 0 (its own group and labels) until its watermark covers the store, then the
    raw loop on its own label. Removes both graphs afterwards."""
    model = GraphModel(f"BenchEntity_{h}", f"BenchTomb_{h}", f"BenchPos_{h}", layout=layout)
    raw_label = f"BenchRaw_{h}"
    try:
        settings = SinkRunnerSettings(group=f"bench-{h}", kafka=kafka, topic_prefix=prefix, batch_max_events=BATCH)
        runner = SinkRunner(settings, Neo4jDestination("bench", graph, model))
        thread = threading.Thread(target=runner.run, daemon=True)
        started = time.perf_counter()
        thread.start()
        assigned = None
        # The runner's own position after each committed batch: reading Neo4j's every 10 ms loaded
        # the server and the sink's interpreter while they were being timed (358 reads in a 30K+30K run).
        while (mark := _watermark_of(runner.metrics.position)) is None or mark < store.seq:
            time.sleep(0.01)
            if not thread.is_alive():
                raise RuntimeError("the sink runner stopped before its watermark reached the last seq")
            if assigned is None and runner.assignment is not None and runner.assignment.keys:
                assigned = time.perf_counter()
        total_s = time.perf_counter() - started
        sink_s = time.perf_counter() - (assigned or started)
        runner.request_stop()
        thread.join(60)
        stored = _watermark(driver, model)
        if stored is None or stored < store.seq:  # what was timed is what Neo4j holds
            raise RuntimeError(f"Neo4j's stored watermark {stored} is below the last seq {store.seq}")
        raw_s = _raw_loop(driver, raw_label, store, layout)
    finally:
        _cleanup(driver, [model.entity_label, model.tombstone_label, model.position_label, raw_label])
    events = len(store.entities) + len(store.relations)
    return {
        "sink_seconds": round(sink_s, 3),
        "sink_events_per_s": round(events / sink_s, 1),
        "sink_seconds_with_startup": round(total_s, 3),
        "raw_seconds": round(raw_s, 3),
        "raw_events_per_s": round(events / raw_s, 1),
        "ratio": round(raw_s / sink_s, 3),
        "ratio_with_startup": round(raw_s / total_s, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--relations", type=int, default=10_000)
    parser.add_argument("--layout", default="caxton", choices=["caxton", MCP])
    parser.add_argument("--runs", type=int, default=3, help="sink + raw pairs; the median ratio is reported")
    parser.add_argument("--out", type=Path, help="default: bench/results/neo4j_sink[_<layout>].json")
    args = parser.parse_args()
    kafka, graph = KafkaSettings.from_env(), local_stack_neo4j()  # the local stack's password unless the env names one
    h = uuid.uuid4().hex[:8]
    prefix = f"bench{h}.caxton.memory"
    store = SimulatedStore()
    publisher = TransactionalPublisher(kafka, prefix, 3)
    ids = []
    msgs: list[Any] = []
    for n in range(args.entities):
        row_id, m = store.create_entity(f"entity-{n}", "bench", [f"observation {n}"])
        ids.append(row_id)
        msgs += m
    for n in range(args.relations):
        _, m = store.create_relation(
            ids[n % len(ids)], ids[(n * 7 + 1) % len(ids)], ["depends on", "works-at", "knows"][n % 3]
        )
        msgs += m
    for start in range(0, len(msgs), 5000):
        publisher.publish(msgs[start : start + 5000])
    publisher.publish(store.heartbeats(3))
    events = args.entities + args.relations

    driver = neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth(), notifications_min_severity="OFF")
    runs: list[dict[str, float]] = []
    try:
        for run in range(args.runs):  # sink then raw, each run on fresh labels: the load moves between runs
            runs.append(
                _one_run(
                    driver, kafka=kafka, graph=graph, prefix=prefix, store=store, h=f"{h}_{run}", layout=args.layout
                )
            )
            print(json.dumps(runs[-1]), flush=True)
    finally:
        driver.close()
        for suffix in ("entities", "relations", "dlq"):
            delete_topic(kafka, f"{prefix}.{suffix}")
    ratios = sorted(r["ratio"] for r in runs)
    result = {
        "events": events,
        "batch": BATCH,
        "layout": args.layout,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "ratio": ratios[len(ratios) // 2],
        "ratio_with_startup": sorted(r["ratio_with_startup"] for r in runs)[len(runs) // 2],
        "runs": runs,
        "note": "ratio: median over runs of raw_seconds / sink_seconds; sink_seconds: partitions assigned to watermark "
        "at the last seq; with_startup: from runner start (schema, consumer, group join); raw loop: same rows and "
        "properties, no seq checks, tombstones or position",
    }
    name = "neo4j_sink.json" if args.layout == "caxton" else f"neo4j_sink_{args.layout}.json"
    out = args.out or Path(__file__).parent / "results" / name
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
