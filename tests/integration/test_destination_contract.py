"""What every destination promises the runner (design §7), tested once and run against each: Neo4j
(the real server) and Qdrant (local mode, the real model). Events are built by the source's own
converter and decoded by the sink's decoder, with offsets from the in-memory broker.

The promises: replaying any batch, any number of times, changes nothing; events of different topics
applied out of seq order converge; a delete is not undone by an older event replayed after it; the
position is written with the data; a destination opened again starts at that stored position and does
not apply again what it covers.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import neo4j
import pytest

from replicator.embedding import load_model
from replicator.sinks.batch import Batch, Event
from replicator.sinks.decode import EventDecoder
from replicator.sinks.neo4j.applier import run_read
from replicator.sinks.neo4j.destination import Neo4jDestination
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings
from replicator.sinks.qdrant.layout import from_payload
from replicator.sinks.qdrant.points import EMBEDDING_SOURCE, STORE
from replicator.sinks.runner import Destination
from replicator.sinks.runner_settings import SinkRunnerSettings
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.source.convert import ChangelogRow, convert_change, heartbeat_messages
from replicator.store.schema import TABLES
from replicator.testing.broker import FakeBroker
from replicator.transport.topics import change_topic as topic_of

PREFIX = "contract.caxton.memory"
STORE_ID = "contract-store"


def entity(entity_id: int, name: str) -> dict[str, Any]:
    return {"id": entity_id, "name": name, "entity_type": "person", "observations": "[]", "created_at": 1,
            "updated_at": 1}  # fmt: skip


class Feed:
    """Changelog rows -> the source's messages -> the in-memory broker -> the sink's decoded Events."""

    def __init__(self, tables: tuple[str, ...]) -> None:
        self.tables = tables
        self.broker = FakeBroker()
        for table in TABLES:
            self.broker.create_topic(topic_of(PREFIX, table), 1)
        self.producer = self.broker.producer()
        self.consumer = self.broker.consumer({"group.id": "contract", "auto.offset.reset": "earliest"})
        self.consumer.subscribe([topic_of(PREFIX, t) for t in tables])
        self.decoder = EventDecoder(SinkRunnerSettings(group="contract"), lambda: False, lambda: 0.0)

    def change(
        self, table: str, op: str, row_id: int, seq: int, image: dict[str, Any], *, before: dict[str, Any] | None = None
    ) -> list[Event]:
        """The events of one changelog row: ``image`` is the row after (before, for a ``d``); an ``u``
        also needs ``before``. A ``d`` is followed by its Kafka tombstone."""
        old, new = (image, None) if op == "d" else (before, image)
        row = ChangelogRow(seq, table, op, row_id, seq, None if old is None else json.dumps(old),
                           None if new is None else json.dumps(new))  # fmt: skip
        for m in convert_change(row, prefix=PREFIX, store_id=STORE_ID).messages:
            self.producer.produce(m.topic, m.value, m.key, partition=0, headers=m.headers)
        return self.read()

    def heartbeat(self, seq: int) -> list[Event]:
        partitions = {t: 1 for t in TABLES}
        for m in heartbeat_messages(prefix=PREFIX, store_id=STORE_ID, seq=seq, seen_ms=seq, partitions=partitions):
            self.producer.produce(m.topic, m.value, m.key, partition=0, headers=m.headers)
        return self.read()

    def read(self) -> list[Event]:
        """What the sink's topics received since the last read, decoded."""
        return [self.decoder.decode(cast(Any, m)) for m in self.consumer.consume(1000, 0)]

    def batch(self, events: list[Event]) -> Batch:
        return Batch(events, {topic_of(PREFIX, t): 1 for t in self.tables})


class Target:
    """One destination under test, with a way to read what it holds and to open it again."""

    tables: tuple[str, ...]
    destination: Destination

    def entities(self) -> dict[int, str]:
        """Entity id -> name of every entity the destination holds."""
        raise NotImplementedError

    def second_topic(self, feed: Feed, seq: int) -> list[Event]:
        """An event of the destination's other topic about entities 1 and 2, at ``seq``."""
        raise NotImplementedError

    def second_topic_applied(self) -> bool:
        raise NotImplementedError

    def reopen(self) -> Destination:
        raise NotImplementedError


class Neo4jTarget(Target):
    tables = ("entities", "relations")

    def __init__(self, graph: Neo4jSettings, layout: str = "caxton") -> None:
        h = uuid.uuid4().hex[:8]
        self.graph = graph
        self.model = GraphModel(f"Entity_{h}", f"Tomb_{h}", f"Pos_{h}", layout=layout)
        self.driver = neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth(), notifications_min_severity="OFF")
        self.destination = Neo4jDestination("contract", graph, self.model)

    def entities(self) -> dict[int, str]:
        rows = run_read(self.driver, self.graph.database,
                        f"MATCH (n:`{self.model.entity_label}`) RETURN n, n:Memory AS memory")  # fmt: skip
        found = {r["n"]["id"]: r["n"]["name"] for r in rows if not r["n"].get("_placeholder")}
        # The mcp layout: every entity (and nothing else) is also a memory node with a list of observations.
        mcp = self.model.layout == "mcp"
        assert all(r["memory"] == (mcp and not r["n"].get("_placeholder")) for r in rows)
        assert not mcp or all(isinstance(r["n"]["observations"], list) for r in rows if r["memory"])
        return found

    def second_topic(self, feed: Feed, seq: int) -> list[Event]:
        image = {"id": 7, "from_entity_id": 1, "to_entity_id": 2, "relation_type": "knows", "strength": 1.0,
                 "confidence": 1.0, "created_at": 1, "updated_at": 1, "from_entity_name": "Ada",
                 "to_entity_name": "Bob"}  # fmt: skip
        return feed.change("relations", "c", 7, seq, image)

    def second_topic_applied(self) -> bool:
        label = self.model.entity_label
        rows = run_read(self.driver, self.graph.database,
                        f"MATCH (a:`{label}` {{id: 1}})-[r]->(b:`{label}` {{id: 2}}) RETURN count(r) AS n")  # fmt: skip
        return bool(rows[0]["n"] == 1)

    def reopen(self) -> Destination:
        self.destination.close()
        self.destination = Neo4jDestination("contract", self.graph, self.model)
        return self.destination

    def drop(self) -> None:
        self.destination.close()
        labels = {self.model.entity_label, self.model.tombstone_label, self.model.position_label}
        with self.driver.session() as session:
            for label in labels:
                session.run(
                    f"MATCH (n:`{label}`) CALL {{ WITH n DETACH DELETE n }} IN TRANSACTIONS OF 5000 ROWS"
                ).consume()
        records, _, _ = self.driver.execute_query("SHOW CONSTRAINTS YIELD name, labelsOrTypes RETURN *")
        for r in records:
            if set(r["labelsOrTypes"] or []) & labels:
                self.driver.execute_query(f"DROP CONSTRAINT `{r['name']}` IF EXISTS")
        records, _, _ = self.driver.execute_query("SHOW INDEXES YIELD name, labelsOrTypes, owningConstraint RETURN *")
        for r in records:
            if r["owningConstraint"] is None and set(r["labelsOrTypes"] or []) & labels:
                self.driver.execute_query(f"DROP INDEX `{r['name']}` IF EXISTS")
        self.driver.close()


class QdrantTarget(Target):
    tables = ("entities", "embeddings")

    def __init__(self, path: Path, model: Any, layout: str = "caxton") -> None:
        self.model = model
        self.settings = QdrantSinkSettings(QdrantSettings(path=path, collection="contract", layout=layout),
                                           sink="contract")  # fmt: skip
        self.destination = QdrantDestination(self.settings, model=model)

    def _points(self) -> dict[int, dict[str, Any]]:
        assert isinstance(self.destination, QdrantDestination)
        points, _ = self.destination.client.scroll("contract", limit=1000, with_payload=True, with_vectors=True)
        if self.settings.qdrant.layout == "mcp":  # what mcp-server-qdrant reads: a named vector, document, metadata
            for p in points:
                assert isinstance(p.vector, dict) and set(p.vector) == {"fast-all-minilm-l6-v2"}
                assert p.payload and isinstance(p.payload["document"], str) and isinstance(p.payload["metadata"], dict)
        return {int(p.id): from_payload(self.settings.qdrant.layout, p.payload or {}) for p in points}

    def entities(self) -> dict[int, str]:
        return {i: str(p["name"]) for i, p in self._points().items()}

    def second_topic(self, feed: Feed, seq: int) -> list[Event]:
        vector = struct.pack("<384f", *([0.0] * 383 + [1.0]))  # not what the model computes for Ada
        image = {"entity_id": 1, "embedding": vector.hex().upper(), "model_version": "all-MiniLM-L6-v2",
                 "created_at": 1, "text_name": "Ada", "text_type": "person", "text_observations": "[]"}  # fmt: skip
        return feed.change("embeddings", "c", 1, seq, image)

    def second_topic_applied(self) -> bool:
        return self._points().get(1, {}).get(EMBEDDING_SOURCE) == STORE

    def reopen(self) -> Destination:
        self.destination.close()
        self.destination = QdrantDestination(self.settings, model=self.model)
        return self.destination

    def drop(self) -> None:
        self.destination.close()


@pytest.fixture(scope="module")
def model() -> Any:
    return load_model()


@pytest.fixture(params=["neo4j", "neo4j-mcp", "qdrant", "qdrant-mcp"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    made: Neo4jTarget | QdrantTarget
    if request.param.startswith("neo4j"):
        made = Neo4jTarget(request.getfixturevalue("graph"), "mcp" if request.param.endswith("mcp") else "caxton")
    else:
        layout = "mcp" if request.param.endswith("mcp") else "caxton"
        made = QdrantTarget(tmp_path / "qdrant", request.getfixturevalue("model"), layout)
    assert made.destination.start() is None
    try:
        yield made
    finally:
        made.drop()


def history(feed: Feed) -> list[Event]:
    """Ada and Bob created, Ada renamed, Bob deleted, then a heartbeat: one event list, in seq order."""
    return [
        *feed.change("entities", "c", 1, 1, entity(1, "Ada")),
        *feed.change("entities", "c", 2, 2, entity(2, "Bob")),
        *feed.change("entities", "u", 1, 3, entity(1, "Ada Lovelace"), before=entity(1, "Ada")),
        *feed.change("entities", "d", 2, 4, entity(2, "Bob")),
        *feed.heartbeat(4),
    ]


def test_replaying_every_batch_twice_leaves_the_same_state(target: Target) -> None:
    feed = Feed(target.tables)
    events = history(feed)
    assert len(events) == 1 + 1 + 1 + 2 + len(target.tables)  # a tombstone after the d; a heartbeat per topic
    for event in events:  # one batch each: every step reads what the previous one left
        target.destination.apply(feed.batch([event]))
    assert target.entities() == {1: "Ada Lovelace"}
    for _ in range(2):
        target.destination.apply(feed.batch(events))
        for start in range(0, len(events), 3):
            target.destination.apply(feed.batch(events[start : start + 3]))
    assert target.entities() == {1: "Ada Lovelace"}


def test_events_of_two_topics_applied_out_of_seq_order_converge(target: Target) -> None:
    feed = Feed(target.tables)
    later = target.second_topic(feed, seq=3)  # about entities 1 and 2, which seqs 1 and 2 create
    assert len(later) == 1
    creates = [
        *feed.change("entities", "c", 1, 1, entity(1, "Ada")),
        *feed.change("entities", "c", 2, 2, entity(2, "Bob")),
    ]
    target.destination.apply(feed.batch(later))
    target.destination.apply(feed.batch(creates))
    assert target.entities() == {1: "Ada", 2: "Bob"}
    assert target.second_topic_applied()


def test_a_delete_is_not_undone_by_older_events_replayed_after_it(target: Target) -> None:
    feed = Feed(target.tables)
    create = feed.change("entities", "c", 1, 1, entity(1, "Ada"))
    update = feed.change("entities", "u", 1, 2, entity(1, "Ada Lovelace"), before=entity(1, "Ada"))
    delete = feed.change("entities", "d", 1, 3, entity(1, "Ada Lovelace"))  # the event and its tombstone
    assert len(create) == 1 and len(delete) == 2 and delete[1].is_tombstone
    target.destination.apply(feed.batch(create + update + delete))
    assert target.entities() == {}
    target.destination.apply(feed.batch(update))
    target.destination.apply(feed.batch(create + update))
    assert target.entities() == {}


def test_the_position_is_written_with_the_data(target: Target) -> None:
    feed = Feed(target.tables)
    events = history(feed)
    batch = feed.batch(events)
    target.destination.apply(batch)
    stored = target.destination.read_position()
    assert stored is not None
    expected = batch.position("contract", 0)
    assert stored.offsets == expected.offsets
    assert stored.applied_seq == 4
    assert {k: h.seq for k, h in stored.heartbeats.items()} == {k: 4 for k in expected.heartbeats}


def test_a_destination_opened_again_starts_at_its_stored_position(target: Target) -> None:
    feed = Feed(target.tables)
    events = history(feed)
    target.destination.apply(feed.batch(events))
    stored = target.destination.read_position()
    again = target.reopen()
    assert again.start() == stored
    # A runner that fell back to Kafka's committed offsets re-reads what the position covers: the
    # events before it are not applied again (the rename stays, the deleted Bob stays deleted).
    again.apply(feed.batch(events[:2]))
    assert target.entities() == {1: "Ada Lovelace"}
    assert stored is not None
    after = again.read_position()
    assert after is not None and (after.offsets, after.applied_seq) == (stored.offsets, stored.applied_seq)


def test_an_older_change_applied_after_a_newer_one_changes_nothing(target: Target) -> None:
    feed = Feed(target.tables)
    create = feed.change("entities", "c", 1, 1, entity(1, "Ada"))
    rename = feed.change("entities", "u", 1, 2, entity(1, "Ada Lovelace"), before=entity(1, "Ada"))
    target.destination.apply(feed.batch(rename))
    target.destination.apply(feed.batch(create))
    assert target.entities() == {1: "Ada Lovelace"}
