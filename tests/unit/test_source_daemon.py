"""The source daemon's control logic, run whole (``SourceDaemon.run``) on a real SQLite store with
capture installed, the in-memory broker and a fake clock (no server, no sleeping): heartbeat cadence
while idle and while busy, the two-signal stop, and the backoff while Kafka is away."""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from replicator.capture.install import install
from replicator.capture.triggers import head_seq
from replicator.events.avro import HEARTBEAT, decode_any
from replicator.source.cadence import Backoff, HeartbeatPolicy, SourceAborted
from replicator.source.clients import SourceClients
from replicator.source.daemon import SourceDaemon
from replicator.source.kafka import TransactionalPublisher, read_position
from replicator.source.settings import SourceSettings
from replicator.store.schema import DDL, TABLES, WRITER_PRAGMAS
from replicator.testing.broker import FakeBroker
from replicator.testing.clock import FakeClock
from replicator.transport.kafka import TransportError
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import change_topic as topic_of
from replicator.transport.topics import positions_topic

PREFIX = "t.caxton.memory"
ENTITIES = topic_of(PREFIX, "entities")


class Rig:
    """A store file, the in-memory broker and the daemon, all on one fake clock."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.db = tmp_path / "memory.db"
        conn = sqlite3.connect(self.db)
        for pragma in WRITER_PRAGMAS:
            conn.execute(pragma)
        conn.executescript(DDL)
        conn.close()
        install(self.db)
        self.clock = FakeClock()
        self.t0 = self.clock.now
        self.broker = FakeBroker(self.clock)
        self.names = 0
        clients = SourceClients(
            ensure_topics=self._ensure_topics,
            publisher=lambda kafka, txn_id, timeout_s, reframe: TransactionalPublisher(
                kafka, txn_id, timeout_s, reframe, producer_of=self.broker.producer
            ),
            read_position=lambda kafka, prefix, store_id: read_position(
                kafka, prefix, store_id, consumer_of=self.broker.consumer
            ),
        )
        self.daemon = SourceDaemon(
            SourceSettings(db=self.db, topic_prefix=PREFIX, partitions=1, **settings),
            progress=False, clock=self.clock, clients=clients,
        )  # fmt: skip

    def _ensure_topics(self, kafka: KafkaSettings, prefix: str, partitions: int) -> dict[str, int]:
        if self.broker.unreachable:
            raise TransportError(f"Kafka at {kafka.bootstrap_servers} did not create topics", hint="is it up?")
        for table in TABLES:
            self.broker.create_topic(topic_of(prefix, table), partitions)
        self.broker.create_topic(positions_topic(prefix), 1)
        return {table: self.broker.partitions(topic_of(prefix, table)) for table in TABLES}

    def write(self, count: int = 1) -> None:
        """``count`` new entities, one writer transaction each."""
        conn = sqlite3.connect(self.db)
        for _ in range(count):
            self.names += 1
            conn.execute("INSERT INTO entities (name, entity_type, observations, created_at, updated_at) "
                         "VALUES (?, 't', '[]', 1, 1)", (f"e{self.names}",))  # fmt: skip
            conn.commit()
        conn.close()

    def every(self, seconds: float, until: float, action: Callable[[], None]) -> None:
        t = seconds
        while t < until:
            self.clock.after(t, action)
            t += seconds

    def run(self, seconds: float) -> None:
        self.clock.after(seconds, self.daemon.request_stop)
        self.daemon.run()

    def heartbeats(self) -> list[tuple[float, int]]:
        """(seconds since the rig started, on the fake clock; seq) of each heartbeat on the entities partition."""
        out = []
        for _key, value in self.broker.records(ENTITIES, 0):
            assert value is not None
            schema, record = decode_any(value)
            if schema == HEARTBEAT:
                seen_s = record["source"]["ts_ms"] / 1000 - self.clock.wall_offset - self.t0
                out.append((seen_s, int(record["source"]["seq"])))
        return out

    def changes(self) -> int:
        return sum(1 for _k, v in self.broker.records(ENTITIES, 0) if v is not None and decode_any(v)[0] != HEARTBEAT)

    def head_seq(self) -> int:
        """The changelog's last seq (the daemon's reader is closed once it returned)."""
        conn = sqlite3.connect(self.db)
        try:
            return head_seq(conn)
        finally:
            conn.close()


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


def test_an_idle_source_sends_a_heartbeat_every_interval(tmp_path: Path) -> None:
    rig = Rig(tmp_path, heartbeat_interval_s=1.0)
    rig.run(10.0)
    beats = rig.heartbeats()
    assert 9 <= len(beats) <= 11, beats
    # Due once the interval passed, sent at the next idle poll (at most poll_max_s = 0.2 s later).
    assert all(1.0 <= gap <= 1.2 for gap in gaps([t for t, _ in beats])), gaps([t for t, _ in beats])


def test_a_busy_source_sends_heartbeats_at_most_one_per_min_gap_and_covers_the_last_change(tmp_path: Path) -> None:
    rig = Rig(tmp_path, heartbeat_interval_s=10.0, heartbeat_min_gap_s=0.5)
    # A change every 5 ms for 3 s: every poll (10 ms) finds new changes, never quiet, never idle.
    rig.every(0.005, 3.0, rig.write)
    last_write: list[float] = []
    rig.clock.after(3.0, lambda: last_write.append(rig.clock.now - rig.t0))
    rig.run(5.0)
    beats = rig.heartbeats()
    busy = [t for t, _ in beats if t <= 3.0]
    assert all(gap >= 0.5 for gap in gaps(busy)), gaps(busy)
    assert len(busy) >= 4, beats  # the interval (10 s) never passed: these came with drained batches
    assert rig.changes() == rig.names
    # The last change is covered by a heartbeat within the min gap (plus a poll), not the 10 s interval.
    covering = [t for t, seq in beats if seq >= rig.daemon.committed_seq]
    assert covering and covering[0] - last_write[0] <= 0.5 + 0.2, (covering, last_write)


def test_when_the_store_goes_quiet_the_last_change_is_covered_within_the_quiet_gap(tmp_path: Path) -> None:
    """A cutover's fence stops the writers mid-stream: the sinks' watermarks (and so its drain) wait for
    the heartbeat that covers the last change. Once a poll finds nothing new, it goes out after the
    quiet gap, not the busy stream's min gap."""
    rig = Rig(tmp_path, heartbeat_interval_s=10.0, heartbeat_min_gap_s=0.5, heartbeat_quiet_gap_s=0.02)
    rig.every(0.03, 3.0, rig.write)  # a change every 30 ms for 3 s, then silence (as under a fence)
    last_write: list[float] = []
    rig.clock.after(3.0, lambda: last_write.append(rig.clock.now - rig.t0))
    rig.run(4.0)
    beats = rig.heartbeats()
    covering = [t for t, seq in beats if seq >= rig.daemon.committed_seq]
    assert rig.changes() == rig.names
    # Two polls (10 ms each while busy) and the quiet gap, not the min gap of 0.5 s.
    assert covering and covering[0] - last_write[0] <= 0.02 + 2 * 0.01 + 0.01, (covering[:1], last_write)
    busy = [t for t, _ in beats if t <= 3.0]
    assert len(busy) >= 4, beats


def test_the_first_stop_drains_what_is_pending_and_ends_on_a_heartbeat(tmp_path: Path) -> None:
    rig = Rig(tmp_path, heartbeat_interval_s=30.0)
    rig.clock.after(1.0, lambda: rig.write(5))

    def write_and_stop() -> None:
        rig.write(3)
        rig.daemon.request_stop()

    rig.clock.after(2.0, write_and_stop)
    rig.daemon.run()  # returns on its own: the first stop drains
    assert rig.changes() == 8
    assert rig.daemon.committed_seq == rig.head_seq()
    assert rig.heartbeats()[-1][1] == rig.daemon.committed_seq


def test_the_second_stop_aborts_at_once_without_draining(tmp_path: Path) -> None:
    rig = Rig(tmp_path, heartbeat_interval_s=30.0)

    def write_and_stop_twice() -> None:
        rig.write(3)
        rig.daemon.request_stop()
        rig.daemon.request_stop()

    rig.clock.after(1.0, write_and_stop_twice)
    with pytest.raises(SourceAborted):
        rig.daemon.run()
    assert rig.changes() == 0  # left without publishing what was pending: it waits in the changelog


def test_a_stop_while_kafka_stays_away_returns_without_draining(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(tmp_path, heartbeat_interval_s=30.0)

    def outage() -> None:
        rig.broker.unreachable = True
        rig.write(2)

    rig.clock.after(1.0, outage)
    with caplog.at_level(logging.WARNING, logger="replicator.source"):
        rig.run(3.0)
    assert any("source_stopped_undrained" in r.getMessage() for r in caplog.records)
    assert rig.changes() == 0 and rig.daemon.committed_seq < rig.head_seq()


def test_reconnecting_backs_off_exponentially_up_to_the_cap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(tmp_path, retry_max_s=2.0)
    rig.broker.unreachable = True
    rig.clock.after(25.0, lambda: setattr(rig.broker, "unreachable", False))
    with caplog.at_level(logging.WARNING, logger="replicator.source"):
        rig.run(30.0)
    assert rig.clock.sleeps[:8] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])
    # One log line per 10 s of outage, not one per retry.
    unavailable = [r for r in caplog.records if "kafka_unavailable" in r.getMessage()]
    assert len(unavailable) == 3, [r.getMessage() for r in unavailable]
    assert rig.heartbeats(), "connected once Kafka came back"
    assert rig.daemon.healthy()


def test_backoff_restarts_from_its_first_wait_after_a_success() -> None:
    backoff = Backoff(cap_s=1.0)
    assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.1


def test_heartbeat_policy_due_after_the_interval_or_the_min_gap_when_changes_are_uncovered() -> None:
    clock = FakeClock()
    policy = HeartbeatPolicy(interval_s=1.0, min_gap_s=0.2, clock=clock)
    assert policy.due(committed_seq=0), "the first heartbeat is due at once"
    policy.committed(5)
    clock.advance(0.1)
    assert not policy.due(committed_seq=7) and not policy.with_drained_batch()
    clock.advance(0.1)
    assert policy.due(committed_seq=7), "changes not covered: due once the min gap passed"
    assert not policy.due(committed_seq=5), "all covered: waits for the interval"
    clock.advance(0.8)
    assert policy.due(committed_seq=5)
    assert policy.idle_wait(0.01, 0.2) == pytest.approx(0.2)
