"""The Neo4j sink (`python -m replicator sink neo4j`) against a PRIVATE Neo4j (its own temp dir and
free Bolt port; Kafka is the shared broker, isolated by topic prefix): Neo4j stopped for 30 s mid-stream, and a
second SIGTERM while a batch cannot finish. The shared stack is never stopped."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import neo4j
import pytest

from replicator.sinks.neo4j.model import GraphModel
from replicator.testing.fake_source import SimulatedStore, TransactionalPublisher
from replicator.transport.kafka import delete_topic
from replicator.transport.settings import KafkaSettings
from tests.integration.private_neo4j import PrivateNeo4j
from tests.integration.sink_harness import committed, http_get, metrics_port, neo4j_flags, start_sink, wait_for
from tests.integration.test_neo4j_sink import Isolated, SinkProcess, _workload

OUTAGE_S = 30.0  # issue 4: "Neo4j stopped for 30 s mid-stream"


@pytest.fixture
def iso(kafka: KafkaSettings, private_neo4j: PrivateNeo4j) -> Iterator[Isolated]:
    h = uuid.uuid4().hex[:8]
    prefix = f"t{h}.caxton.memory"
    graph = private_neo4j.graph
    driver = neo4j.GraphDatabase.driver(graph.uri, auth=graph.auth(), notifications_min_severity="OFF")
    model = GraphModel(f"Entity_{h}", f"Tomb_{h}", f"Pos_{h}", audit=True)
    yield Isolated(kafka, graph, prefix, model, driver, TransactionalPublisher(kafka, prefix, 3))
    driver.close()
    for suffix in ("entities", "relations", "dlq"):
        delete_topic(kafka, f"{prefix}.{suffix}")


@contextlib.contextmanager
def _sink(iso: Isolated, group: str) -> Iterator[SinkProcess]:
    proc = start_sink("neo4j", iso.kafka, iso.prefix, group, *neo4j_flags(iso, "s"), graph=iso.graph)
    try:
        yield proc
    finally:
        if proc.proc.poll() is None:  # the test failed with the sink still running
            proc.kill()


def test_neo4j_down_mid_stream_pauses_commits_then_catches_up_exactly_once(
    iso: Isolated, private_neo4j: PrivateNeo4j
) -> None:
    store, rng, done, published = SimulatedStore(), random.Random(3), threading.Event(), [0]

    def produce() -> None:  # the source keeps writing through the whole outage
        while not done.is_set():
            iso.publisher.publish(_workload(store, rng, 1)[0])
            published[0] += 1
            time.sleep(0.05)

    group = "g" + uuid.uuid4().hex[:6]
    topics = [f"{iso.prefix}.entities", f"{iso.prefix}.relations"]
    producer = threading.Thread(target=produce, daemon=True)
    with _sink(iso, group) as proc:
        port = metrics_port(proc)
        producer.start()
        wait_for(lambda: sum(committed(iso.kafka, group, topics, 3).values()) > 0, 30, "a first commit")
        private_neo4j.stop()
        stopped = time.monotonic()
        wait_for(lambda: http_get(port, "/healthz")[0] == 503, 30, "/healthz to report the outage")
        time.sleep(1)  # an asynchronous commit of the last batch before the outage may still land
        frozen, before = committed(iso.kafka, group, topics, 3), published[0]
        while time.monotonic() - stopped < OUTAGE_S:  # the outage: Neo4j down for 30 s
            time.sleep(1)
            assert proc.proc.poll() is None, "".join(proc.log)[-2000:]
            assert http_get(port, "/healthz")[0] == 503
        assert committed(iso.kafka, group, topics, 3) == frozen, "offsets committed while Neo4j was down"
        assert published[0] > before + 50, "the source did not keep writing during the outage"

        private_neo4j.start()
        done.set()
        producer.join(30)
        iso.wait_equal(store, timeout_s=60)
        wait_for(lambda: http_get(port, "/healthz")[0] == 200, 10, "/healthz to recover")
        after = committed(iso.kafka, group, topics, 3)
        assert all(after[k] >= frozen[k] for k in frozen) and after != frozen
        assert all(a == sorted(set(a)) for a in iso.applied_lists()), "a seq was applied twice"
        assert proc.terminate() == 0, "".join(proc.log)[-2000:]


def test_a_second_sigterm_aborts_a_batch_neo4j_cannot_finish(iso: Isolated, private_neo4j: PrivateNeo4j) -> None:
    store = SimulatedStore()
    with _sink(iso, "g" + uuid.uuid4().hex[:6]) as proc:
        proc.wait_log("partitions assigned")
        private_neo4j.signal(signal.SIGSTOP)  # paused: the next batch's transaction hangs
        try:
            iso.publisher.publish(_workload(store, random.Random(5), 1)[0])
            time.sleep(1.5)  # polled and being applied
            proc.proc.send_signal(signal.SIGTERM)
            proc.wait_log("stopping: flushing and committing")
            time.sleep(1)
            assert proc.proc.poll() is None, "the first signal must wait for the batch (flush, commit)"
            sent = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            code = proc.proc.wait(10)
            assert time.monotonic() - sent < 3
        finally:
            private_neo4j.signal(signal.SIGCONT)
    assert code == 130
    proc.wait_log("second signal: aborting without flushing", timeout_s=5)
