"""The Neo4j sink's HTTP endpoint over real HTTP, the sink running as `python -m replicator sink neo4j`
(the Qdrant sink's endpoint is exercised in test_qdrant_sink_runner.py)."""

from __future__ import annotations

import json
import uuid

from replicator.events.avro import encode_key
from replicator.position import SinkPosition
from replicator.testing.fake_source import SimulatedStore
from tests.integration import test_neo4j_sink
from tests.integration.sink_harness import (
    http_get,
    metric,
    metrics_port,
    neo4j_flags,
    position_document,
    start_sink,
    wait_for,
)
from tests.integration.test_neo4j_sink import Isolated

iso = test_neo4j_sink.iso  # the fixture: unique prefix, labels; cleans up


def _watermark(port: int) -> int:
    raw = position_document(port)["position"]
    mark = None if raw is None else SinkPosition.from_json(json.dumps(raw)).watermark()
    return -1 if mark is None else mark.seq


def test_metrics_healthz_and_position_after_a_poison_event(iso: Isolated) -> None:
    store = SimulatedStore()
    a, m1 = store.create_entity("alice")
    b, m2 = store.create_entity("bob")
    _, m3 = store.create_relation(a, b, "knows")
    iso.publisher.publish(m1 + m2 + m3)
    iso.publisher.publish_raw("entities", encode_key(999), b"not avro at all")
    iso.publisher.publish(store.update_entity(a, name="alice2") + store.heartbeats(3))
    proc = start_sink(
        "neo4j", iso.kafka, iso.prefix, "g" + uuid.uuid4().hex[:6], *neo4j_flags(iso, "s"), graph=iso.graph
    )
    try:
        port = metrics_port(proc)
        iso.wait_equal(store)
        wait_for(lambda: _watermark(port) == store.seq, 20, "the watermark at the last heartbeat")

        status, body = http_get(port, "/metrics")
        assert status == 200
        text = body.decode()
        assert metric(text, "replicator_sink_events_applied_total") == 4  # c, c, c, u; not the poison
        assert metric(text, "replicator_sink_watermark_seq") == store.seq
        assert metric(text, "replicator_sink_dead_letters_total") == 1
        assert metric(text, "replicator_sink_batch_seconds_count") >= 1

        # kafka-lag-exporter's names (refreshed once a second): caught up, each partition is at most
        # one offset behind, the last transaction's commit marker, which no consumer ever receives.
        def lags() -> list[float]:
            scraped = http_get(port, "/metrics")[1].decode().splitlines()
            return [
                float(line.rsplit(" ", 1)[1]) for line in scraped if line.startswith("kafka_consumergroup_group_lag{")
            ]

        wait_for(lambda: bool(lags()) and max(lags()) <= 1, 10, "per-partition lag at the log end")
        assert 0 <= metric(http_get(port, "/metrics")[1].decode(), "kafka_consumergroup_group_lag_seconds") < 60
        assert http_get(port, "/healthz") == (200, b"ok\n")
        document = position_document(port)
        assert document["position"]["sink"] == "s" and document["position"]["applied_seq"] == store.seq
        assert document["destination"] == {"entity_nodes": 2, "relations": 1}
        assert http_get(port, "/nope")[0] == 404
    finally:
        code = proc.terminate()
    assert code == 0, "".join(proc.log)[-2000:]
