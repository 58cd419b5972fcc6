"""Snapshot then stream through the Neo4j sink: `r` events (every row at the snapshot's head W), then
changes with seq > W to the same rows; a replay of the snapshot afterwards changes nothing."""

from __future__ import annotations

import time
import uuid

from replicator.events.avro import ENTITY_CHANGE, RELATION_CHANGE, codec, encode_key
from replicator.events.envelope import change_record, source_record
from replicator.sinks.neo4j.applier import read_position
from replicator.sinks.runner import SinkRunner
from replicator.testing.fake_source import Message, SimulatedStore
from tests.integration import test_neo4j_sink
from tests.integration.test_neo4j_sink import Isolated, Running

iso = test_neo4j_sink.iso  # the fixture: unique prefix and labels on the shared servers; cleans up


def _snapshot(store: SimulatedStore) -> list[Message]:
    """What the source's initial snapshot publishes: one `r` per row, all at the head W."""
    rows = [("entities", ENTITY_CHANGE, r) for r in store.entities.values()]
    rows += [("relations", RELATION_CHANGE, r) for r in store.relations.values()]
    out: list[Message] = []
    for n, (table, schema, row) in enumerate(rows):
        source = source_record(store.store_id, table, store.seq, 1, "last" if n == len(rows) - 1 else "true")
        record = change_record("r", None, dict(row), source, 1)
        out.append((table, None, encode_key(int(row["id"])), codec(schema).encode(record)))
    return out


def _wait_offsets(iso: Isolated, sink: str, total: int) -> None:
    """Until the stored position covers ``total`` messages (all partitions together)."""
    deadline = time.monotonic() + 30
    while (pos := read_position(iso.driver, sink, model=iso.model)) is None or sum(pos.offsets.values()) < total:
        assert time.monotonic() < deadline, pos
        time.sleep(0.2)


def test_snapshot_then_newer_stream_events_then_a_snapshot_replay(iso: Isolated) -> None:
    store = SimulatedStore()
    ids = [store.create_entity(f"e{i}", observations=[f"o{i}"])[0] for i in range(6)]
    rels = [store.create_relation(ids[i], ids[i + 1], "knows")[0] for i in range(5)]
    snapshot = _snapshot(store)  # W = store.seq for every row
    snapshot_done = store.heartbeats(3)  # at W: the source's heartbeats when the snapshot is complete
    stream = store.update_entity(ids[0], name="renamed") + store.update_relation(rels[1], strength=0.25)
    stream += store.delete_entity(ids[2]) + store.delete_relation(rels[4])  # the cascade takes rels 1 and 2
    stream += store.create_relation(ids[3], ids[0], "likes")[1] + store.update_entity(ids[5], observations=["new"])
    iso.publisher.publish(snapshot + snapshot_done)
    iso.publisher.publish(stream)
    running = Running(SinkRunner(iso.settings("g" + uuid.uuid4().hex[:6], sink="s"), iso.destination("s")))
    try:
        iso.wait_equal(store)
        after_stream = iso.state()
        published = len(snapshot) + len(stream) + 2 * 3  # and a round of heartbeats
        _wait_offsets(iso, "s", published)
        # The snapshot's rows again, older than the stream's changes and deletes (a duplicate delivery),
        # before the heartbeat that covers the stream (a heartbeat promises nothing older follows it):
        # the stream's tombstones are still there to stop them.
        iso.publisher.publish(snapshot + store.heartbeats(3))
        _wait_offsets(iso, "s", published + len(snapshot) + 2 * 3)
    finally:
        running.stop()
    assert iso.state() == after_stream
    assert all(a == sorted(set(a)) for a in iso.applied_lists()), "a seq was applied twice"
