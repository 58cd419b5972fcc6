"""A hub entity through the real Neo4j sink: one entity with N relations, created, updated, deleted.

    PYTHONPATH=$PWD .venv/bin/python bench/hub.py [--relations 50000] [--updates 1000]

Publishes with the stand-in transactional source (shared local Kafka), runs the sink runner against
the shared Neo4j and times three phases, each until the sink's watermark reaches the phase's last
seq: (1) the hub, N leaves and N relations (half hub->leaf, half leaf->hub); (2) ``--updates``
strength updates of the hub's relations; (3) deleting the hub (its relations' deletes first, as
SQLite's cascade records them, then the entity), until no detaching node is left. Also PROFILEs one
relation update and one relation delete as the sink plans them (total db hits) on the full hub.
Writes bench/results/hub.json (``--out`` to write elsewhere, e.g. for a run of an older version).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import neo4j

from replicator.events.avro import decode_any, decode_key
from replicator.sinks.batch import Batch, Event
from replicator.sinks.neo4j.applier import read_position
from replicator.sinks.neo4j.destination import Neo4jDestination
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.neo4j.planner import plan
from replicator.sinks.runner import SinkRunner
from replicator.sinks.runner_settings import SinkRunnerSettings
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.fake_source import Message, SimulatedStore, TransactionalPublisher
from replicator.transport.kafka import delete_topic
from replicator.transport.settings import KafkaSettings

BATCH = 1000
PARTITIONS = 3


def _cleanup(driver: neo4j.Driver, labels: list[str]) -> None:
    with driver.session() as session:
        for label in labels:
            query = f"MATCH (n:`{label}`) CALL {{ WITH n DETACH DELETE n }} IN TRANSACTIONS OF 5000 ROWS"
            session.run(query).consume()
        for kind, show, extra in (
            ("CONSTRAINT", "CONSTRAINTS", ""),
            ("INDEX", "INDEXES", "AND owningConstraint IS NULL "),
        ):
            found = session.run(
                f"SHOW {show} YIELD * WHERE any(l IN labelsOrTypes WHERE l IN $l) {extra}RETURN name", l=labels
            )
            for name in [r["name"] for r in found]:
                session.run(f"DROP {kind} `{name}` IF EXISTS").consume()


def _db_hits(driver: neo4j.Driver, model: GraphModel, store: SimulatedStore, messages: list[Message]) -> int:
    """Total db hits of the statements the sink plans for ``messages`` (run under PROFILE: applied)."""
    events = []
    for offset, (table, _p, key, value) in enumerate(messages):
        if value is None:  # the tombstone after a delete: the delete itself is planned already
            continue
        schema, record = decode_any(value)
        events.append(Event(f"bench.{table}", 0, offset, decode_key(key), schema, record, key, value))
    todo = plan(Batch(events, {}), model)

    def total(profile: dict[str, Any]) -> int:
        return int(profile.get("dbHits", 0)) + sum(total(child) for child in profile.get("children", []))

    hits = 0
    with driver.session() as session:
        for statement in todo.statements(model):
            params = {"rows": statement.rows, "ns": model.entity_label, "store": store.store_id}
            summary = session.run("PROFILE " + statement.query, params).consume()
            hits += total(summary.profile or {})
    return hits


class Phases:
    """Publishes and times one phase at a time against a running sink."""

    def __init__(self, driver: neo4j.Driver, publisher: TransactionalPublisher, store: SimulatedStore,
                 model: GraphModel) -> None:  # fmt: skip
        self.driver, self.publisher, self.store, self.model = driver, publisher, store, model

    def run(self, messages: list[Message], *, until_detached: bool = False) -> float:
        started = time.perf_counter()
        for start in range(0, len(messages), 5000):
            self.publisher.publish(messages[start : start + 5000])
        self.publisher.publish(self.store.heartbeats(PARTITIONS))
        tomb = f"`{self.model.tombstone_label}`"
        while True:
            pos = read_position(self.driver, "bench", model=self.model)
            mark = pos.watermark() if pos is not None else None
            done = mark is not None and mark.seq >= self.store.seq
            if done and until_detached:
                left = self.driver.execute_query(
                    f"MATCH (d:{tomb}) WHERE d.detaching IS NOT NULL RETURN count(d) AS c"
                ).records[0]["c"]
                if left:
                    self.publisher.publish(self.store.heartbeats(PARTITIONS))  # heartbeats drive upkeep
                    time.sleep(0.2)
                    continue
            if done:
                return time.perf_counter() - started
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--relations", type=int, default=50_000)
    parser.add_argument("--updates", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "hub.json")
    args = parser.parse_args()
    kafka, graph = KafkaSettings.from_env(), Neo4jSettings.from_env()
    h = uuid.uuid4().hex[:8]
    prefix = f"benchhub{h}.caxton.memory"
    model = GraphModel(f"HubEntity_{h}", f"HubTomb_{h}", f"HubPos_{h}")
    store = SimulatedStore()
    publisher = TransactionalPublisher(kafka, prefix, PARTITIONS)
    hub, create = store.create_entity("hub", "bench", ["the entity everything points at"])
    rels = []
    for n in range(args.relations):
        leaf, m = store.create_entity(f"leaf-{n}", "bench", [f"observation {n}"])
        create += m
        rel, m = store.create_relation(hub, leaf, "knows") if n % 2 else store.create_relation(leaf, hub, "knows")
        rels.append(rel)
        create += m
    driver = neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth(), notifications_min_severity="OFF")
    settings = SinkRunnerSettings(group=f"bench-{h}", kafka=kafka, topic_prefix=prefix, batch_max_events=BATCH)
    runner = SinkRunner(settings, Neo4jDestination("bench", graph, model))
    thread = threading.Thread(target=runner.run, daemon=True)
    result: dict[str, Any] = {"relations": args.relations, "updates": args.updates, "batch": BATCH}
    try:
        thread.start()
        phases = Phases(driver, publisher, store, model)
        result["create_seconds"] = round(phases.run(create), 2)
        updates = [m for rel in rels[: args.updates] for m in store.update_relation(rel, 0.5)]
        result["update_seconds"] = round(phases.run(updates), 2)
        result["db_hits_one_update"] = _db_hits(driver, model, store, store.update_relation(rels[-1], 0.25))
        result["db_hits_one_delete"] = _db_hits(driver, model, store, store.delete_relation(rels[-1]))
        result["delete_seconds"] = round(phases.run(store.delete_entity(hub), until_detached=True), 2)
        ent = f"`{model.entity_label}`"
        result["left_after_delete"] = driver.execute_query(
            f"MATCH (n:{ent}) WHERE n.id = $hub OR EXISTS {{ (n)-[]-() }} RETURN count(n) AS c", hub=hub
        ).records[0]["c"]
        runner.request_stop()
        thread.join(60)
    finally:
        _cleanup(driver, [model.entity_label, model.tombstone_label, model.position_label])
        driver.close()
        for suffix in ("entities", "relations", "dlq"):
            delete_topic(kafka, f"{prefix}.{suffix}")
    result["events_per_s"] = {
        "create": round(2 * args.relations / result["create_seconds"]),
        "update": round(args.updates / result["update_seconds"]),
        "delete": round((args.relations + 1) / result["delete_seconds"]),
    }
    result["note"] = (
        "times include publishing and waiting for the watermark; delete waits until no detaching node is left; "
        "db hits = PROFILE of the statements the sink plans for one change of a hub relation"
    )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
