"""The Neo4j destination against the real server, batch by batch (no Kafka needed): one label
replicates one store, tombstones are scoped and collected, and a hub entity is looked up and deleted
without touching its other relationships in one transaction (issue 17, items 2 and 7)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import neo4j
import pytest

from replicator.events.avro import decode_any, decode_key
from replicator.events.headers import Parsed
from replicator.sinks.batch import Batch, Event, StoreMismatch
from replicator.sinks.neo4j.applier import NamespaceTaken, run_read
from replicator.sinks.neo4j.cypher import relation_delete_query, relation_upsert_query
from replicator.sinks.neo4j.destination import Neo4jDestination
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.neo4j.upkeep import BUDGET
from replicator.sinks.settings import Neo4jSettings
from replicator.testing.fake_source import Message, SimulatedStore
from tests.integration.test_shared_destinations import drop_labels

PARTITIONS = {"p.entities": 1, "p.relations": 1}


class Feed:
    """Turns a SimulatedStore's messages into the events the runner would hand over (one partition
    per topic, running offsets; tombstones with the headers the real source puts on them)."""

    def __init__(self, store: SimulatedStore) -> None:
        self.store = store
        self.offsets = {"entities": 0, "relations": 0}

    def events(self, messages: list[Message]) -> list[Event]:
        out: list[Event] = []
        for table, _partition, key, value in messages:
            offset = self.offsets[table]
            self.offsets[table] += 1
            if value is None:  # the tombstone after a d: the d's seq is the one just assigned
                headers = Parsed(table=table, seq=int(out[-1].seq or 0))
                out.append(Event(f"p.{table}", 0, offset, decode_key(key), None, None, key, None, headers))
                continue
            schema, record = decode_any(value)
            out.append(Event(f"p.{table}", 0, offset, decode_key(key), schema, record, key, value))
        return out

    def heartbeats(self) -> list[Event]:
        return self.events([(t, 0, k, v) for t, _p, k, v in self.store.heartbeats(1)])

    def batch(self, messages: list[Message], *, heartbeat: bool = False) -> Batch:
        return Batch(self.events(messages) + (self.heartbeats() if heartbeat else []), dict(PARTITIONS))


@pytest.fixture
def model(graph: Neo4jSettings) -> Iterator[GraphModel]:
    h = uuid.uuid4().hex[:8]
    model = GraphModel(f"Entity_{h}", f"Tomb_{h}", f"Pos_{h}")
    yield model
    drop_labels(graph, {model.entity_label, model.tombstone_label, model.position_label, "Other" + model.entity_label})


def started(name: str, graph: Neo4jSettings, model: GraphModel) -> Neo4jDestination:
    destination = Neo4jDestination(name, graph, model)
    destination.start()
    return destination


def count(dest: Neo4jDestination, query: str, **params: Any) -> int:
    return int(run_read(dest.driver, dest.settings.database, query, **params)[0]["c"])


def test_one_label_replicates_one_store(graph: Neo4jSettings, model: GraphModel) -> None:
    first, second = SimulatedStore(), SimulatedStore()
    dest = started("one", graph, model)
    try:
        dest.apply(Feed(first).batch(first.create_entity("a")[1], heartbeat=True))
        before = count(dest, f"MATCH (n:`{model.entity_label}`) RETURN count(n) AS c")
        with pytest.raises(StoreMismatch, match=f"holds the graph of store {first.store_id}"):
            dest.apply(Feed(second).batch(second.create_entity("b")[1] + second.create_entity("c")[1]))
        assert count(dest, f"MATCH (n:`{model.entity_label}`) RETURN count(n) AS c") == before == 1
    finally:
        dest.close()


def test_a_sink_name_keeps_one_namespace(graph: Neo4jSettings, model: GraphModel) -> None:
    store = SimulatedStore()
    dest = started("shared-name", graph, model)
    other_model = GraphModel("Other" + model.entity_label, model.tombstone_label, model.position_label)
    other = started("shared-name", graph, other_model)
    try:
        dest.apply(Feed(store).batch(store.create_entity("a")[1]))
        with pytest.raises(NamespaceTaken, match=f"writing label '{model.entity_label}'"):
            other.apply(Feed(store).batch(store.create_entity("b")[1]))
    finally:
        dest.close()
        other.close()


def test_tombstones_are_scoped_and_collected_once_the_watermark_passes(graph: Neo4jSettings, model: GraphModel) -> None:
    store = SimulatedStore()
    feed = Feed(store)
    dest = started("gc", graph, model)
    tomb = f"`{model.tombstone_label}`"
    try:
        a, created = store.create_entity("a")
        dest.apply(feed.batch(created))
        dest.apply(feed.batch(store.delete_entity(a)))  # no heartbeat: the watermark is behind the delete
        rows = run_read(dest.driver, dest.settings.database, f"MATCH (t:{tomb}) RETURN properties(t) AS p")
        assert [r["p"] for r in rows] == [
            {"ns": model.entity_label, "store": store.store_id, "kind": "entity", "id": a, "_seq": store.seq}
        ]
        last = feed.batch([], heartbeat=True)
        dest.apply(last)  # watermark = the delete's seq: nothing older can come
        assert count(dest, f"MATCH (t:{tomb}) RETURN count(t) AS c") == 0
        # A re-read (a runner falling back to Kafka's lagging committed offsets, a retried batch whose
        # transaction had committed) is left out by its offsets: the create does not come back.
        again = Feed(store)
        dest.apply(Batch([*again.events(created), *last.events], dict(PARTITIONS)))
        assert count(dest, f"MATCH (n:`{model.entity_label}`) RETURN count(n) AS c") == 0
    finally:
        dest.close()


def test_tombstones_of_older_versions_are_ignored_and_named(
    graph: Neo4jSettings, model: GraphModel, caplog: pytest.LogCaptureFixture
) -> None:
    """An older version keyed tombstones by (kind, id) under one label for every pipeline: another
    store's delete of id 1 at seq 1000 must not stop this store's create of id 1 at seq 1."""
    with neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth()) as driver:
        tomb = model.tombstone_label
        driver.execute_query(
            f"CREATE CONSTRAINT `{tomb.lower()}_kind_id_unique` IF NOT EXISTS "
            f"FOR (t:`{tomb}`) REQUIRE (t.kind, t.id) IS UNIQUE"
        )
        driver.execute_query(f"CREATE (:`{tomb}` {{kind: 'entity', id: 1, _seq: 1000}})")
    store = SimulatedStore()
    with caplog.at_level(logging.WARNING):
        dest = started("legacy", graph, model)
    try:
        assert any("older version" in r.getMessage() and getattr(r, "count", 0) == 1 for r in caplog.records)
        dest.apply(Feed(store).batch(store.create_entity("a")[1], heartbeat=True))
        names = run_read(dest.driver, dest.settings.database, f"MATCH (n:`{model.entity_label}`) RETURN n.name AS c")
        assert [r["c"] for r in names] == ["a"]
    finally:
        dest.close()


def _db_hits(dest: Neo4jDestination, query: str, **params: Any) -> int:
    with dest.driver.session(database=dest.settings.database) as session:
        summary = session.run("PROFILE " + query, params).consume()
    assert summary.profile is not None

    def total(plan: dict[str, Any]) -> int:
        return int(plan.get("dbHits", 0)) + sum(total(child) for child in plan.get("children", []))

    return total(summary.profile)


def test_a_hub_is_never_expanded_and_its_delete_stays_bounded(graph: Neo4jSettings, model: GraphModel) -> None:
    store = SimulatedStore()
    feed = Feed(store)
    dest = started("hub", graph, model)
    degree = 3 * BUDGET
    try:
        hub, messages = store.create_entity("hub")
        leaves = []
        for i in range(degree):
            leaf, created = store.create_entity(f"leaf{i}")
            leaves.append(leaf)
            messages += created
        dest.apply(feed.batch(messages))
        rels: list[int] = []
        for start in range(0, degree, 1000):
            batch: list[Message] = []
            for leaf in leaves[start : start + 1000]:
                ends = (hub, leaf) if leaf % 2 else (leaf, hub)
                rel, created = store.create_relation(*ends, "knows")
                rels.append(rel)
                batch += created
            dest.apply(feed.batch(batch))
        scope = {"ns": model.namespace, "store": store.store_id}

        # One relation of the hub, both directions: a handful of db hits, not one per hub relationship.
        for rel in rels[:2]:
            row = store.relations[rel]
            pair = [[row["from_entity_id"], row["to_entity_id"]]]
            upsert = [{"id": rel, "seq": store.seq + 1, "from": pair[0][0], "to": pair[0][1], "pairs": pair,
                       "props": {"relation_type": "knows", "strength": 0.5}}]  # fmt: skip
            assert _db_hits(dest, relation_upsert_query(model, "KNOWS"), rows=upsert, **scope) < 60
            delete = [{"id": rel, "seq": store.seq + 2, "pairs": pair}]
            assert _db_hits(dest, relation_delete_query(model), rows=delete, **scope) < 60

        # The hub's delete arrives before its relations' (another topic, behind): it leaves the label
        # at once and is emptied BUDGET relationships per transaction, its own and those that follow.
        cascade = store.delete_entity(hub)
        dest.apply(feed.batch([m for m in cascade if m[0] == "entities"]))
        ent, tomb = f"`{model.entity_label}`", f"`{model.tombstone_label}`"
        assert count(dest, f"MATCH (n:{ent} {{id: $id}}) RETURN count(n) AS c", id=hub) == 0
        assert count(dest, f"MATCH (a:{ent})-[r]->(b:{ent}) RETURN count(r) AS c") == 0
        attached = f"MATCH (d:{tomb}) WHERE d.detaching IS NOT NULL OPTIONAL MATCH (d)-[r]-() RETURN count(r) AS c"
        left = [count(dest, attached)]
        while left[-1] and len(left) < 10:
            dest.apply(feed.batch([], heartbeat=True))
            left.append(count(dest, attached))
        assert left == [2 * BUDGET - 2, BUDGET - 2, 0]  # degree - the 2 deleted above - BUDGET per batch
        assert count(dest, f"MATCH (d:{tomb}) WHERE d.detaching IS NOT NULL RETURN count(d) AS c") == 0

        dest.apply(feed.batch([m for m in cascade if m[0] == "relations"], heartbeat=True))
        assert count(dest, f"MATCH (n:{ent}) RETURN count(n) AS c") == degree
        tombstones = [count(dest, f"MATCH (t:{tomb}) RETURN count(t) AS c")]
        while tombstones[-1] and len(tombstones) < 10:  # all behind the watermark: BUDGET per transaction
            dest.apply(feed.batch([], heartbeat=True))
            tombstones.append(count(dest, f"MATCH (t:{tomb}) RETURN count(t) AS c"))
        assert tombstones == [2 * BUDGET, BUDGET, 0]
    finally:
        dest.close()
