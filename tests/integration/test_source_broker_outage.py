"""The source under a broker outage (issue 3: "Broker stopped for 30 s mid-run"), on a Kafka of its
own: the writer never waits on the source or Kafka, every producer dropped during the outage is
closed, and after the broker returns every change is published exactly once."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from replicator.demo.daemons import free_ports
from replicator.source.daemon import SourceDaemon
from replicator.source.settings import SourceSettings
from replicator.stack import control
from replicator.stack.kafka import KafkaServer
from replicator.stack.process import spawn, terminate
from replicator.stack.service import log_file, pid_file
from replicator.stack.settings import StackSettings
from replicator.testing.replay import replay
from replicator.transport.settings import KafkaSettings
from tests.integration.sink_harness import wait_for
from tests.integration.test_source_exactly_once import Workload, assert_equal_state, assert_exactly_once, make_store


class PrivateKafka:
    """A Kafka broker of its own (no Neo4j), started and stopped by this test only."""

    def __init__(self, root: Path) -> None:
        kafka_port, controller_port, bolt_port = free_ports(3)
        self.settings = StackSettings(root=root, kafka_port=kafka_port, kafka_controller_port=controller_port,
                                      bolt_port=bolt_port, kafka_heap_mb=384)  # fmt: skip
        self.server = KafkaServer(self.settings)
        self.toolchain = control.resolve(self.settings, lambda _line: None)
        self.pid: int | None = None

    def start(self) -> None:
        self.pid = spawn(self.server.command(self.toolchain), log_file(self.server), pid_file(self.server))
        deadline = time.monotonic() + 120
        while not self.server.probe(2.0).ok:
            assert time.monotonic() < deadline, "private Kafka did not come up"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.pid is not None:
            terminate(self.pid)
            self.pid = None


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[PrivateKafka]:
    broker = PrivateKafka(tmp_path / "stack")
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def test_broker_outage_does_not_slow_the_writer_and_loses_nothing(tmp_path: Path, private_kafka: PrivateKafka) -> None:
    kafka = KafkaSettings(private_kafka.settings.kafka_bootstrap, timeout_s=5.0)
    prefix = f"t{uuid.uuid4().hex[:8]}.caxton.memory"
    db = make_store(tmp_path / "memory.db", prepopulate=50)
    daemon = SourceDaemon(
        SourceSettings(db=db, bootstrap_servers=kafka.bootstrap_servers, topic_prefix=prefix,
                       kafka_timeout_s=5.0, retry_max_s=2.0, metrics_port=0),
        progress=False,
    )  # fmt: skip
    threads_before = len(os.listdir("/proc/self/task"))  # OS threads: librdkafka's are not Python's
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    workload = Workload(db, seed=23, pause_s=0.005)
    workload.start()
    time.sleep(4)
    committed_before = daemon.committed_seq
    private_kafka.stop()
    outage_started = len(workload.latencies)
    time.sleep(30)  # issue 3: "Broker stopped for 30 s mid-run"
    outage_latencies = workload.latencies[outage_started:]
    assert not daemon.healthy()
    private_kafka.start()
    time.sleep(8)
    workload.stop.set()
    workload.join()
    daemon.request_stop()
    thread.join(60)
    assert not thread.is_alive()
    # Every producer dropped during the outage was closed, not left reconnecting until garbage collection.
    # (librdkafka's threads end shortly after close(): allow them a few seconds.)
    wait_for(lambda: len(os.listdir("/proc/self/task")) <= threads_before, 10, "the source's Kafka threads to end")

    assert workload.error is None
    assert len(outage_latencies) > 100  # the writer kept writing during the outage ...
    assert max(outage_latencies) < 0.5  # ... without waiting on the source or Kafka
    assert daemon.metrics.txn_failures._value.get() > 0
    assert daemon.committed_seq > committed_before
    got = replay(kafka, prefix)
    assert_exactly_once(db, got)
    assert_equal_state(db, got)
