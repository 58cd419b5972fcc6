"""The sink runner's handling of the three kinds of failure, with a fake destination, consumer and
dead-letter topic (no server): retryable waits, fatal stops and waits for the cause to go, and only
an event the destination refuses while the rest of its batch applies is set aside (issue 17, item 1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from replicator.errors import Fatal
from replicator.events.avro import HEARTBEAT
from replicator.position import PartitionKey, SinkPosition
from replicator.sinks.batch import Batch, Event
from replicator.sinks.errors import DestinationUnavailable, PoisonEvent
from replicator.sinks.runner import SinkRunner
from replicator.sinks.runner_settings import SinkRunnerSettings

TOPIC = "t.caxton.memory.entities"
P0, P1 = PartitionKey(TOPIC, 0), PartitionKey(TOPIC, 1)


def change(where: PartitionKey, offset: int, seq: int) -> Event:
    record = {"op": "c", "source": {"store": "s1", "seq": seq, "ts_ms": 1}}
    return Event(where.topic, where.partition, offset, seq, "caxton.memory.EntityChange", record)


@dataclass
class FakeConsumer:
    """What the runner asks of a confluent_kafka Consumer; ``on_consume`` runs at every poll."""

    on_consume: Callable[[int], None] = lambda _n: None
    polls: int = 0
    paused: set[tuple[str, int]] = field(default_factory=set)
    commits: list[dict[str, int]] = field(default_factory=list)
    seeks: list[tuple[str, int, int]] = field(default_factory=list)

    def consume(self, num_messages: int = 1, timeout: float = 0) -> list[Any]:
        self.polls += 1
        self.on_consume(self.polls)
        return []

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.commits.append({f"{tp.topic}/{tp.partition}": tp.offset for tp in offsets})

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        raise RuntimeError("not fetched")

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.seeks.append(("subscribe", 0, 0))

    def unsubscribe(self) -> None:
        self.seeks.append(("unsubscribe", 0, 0))


@dataclass
class FakeDeadLetters:
    sent: list[tuple[int, str]] = field(default_factory=list)  # (offset, reason)
    trace: list[tuple[str, Any]] | None = None

    def send(self, event: Event, reason: str) -> None:
        self.sent.append((event.offset, reason))
        if self.trace is not None:
            self.trace.append(("dlq", (event.where, event.offset)))

    def close(self) -> None:
        pass


@dataclass
class FakeDestination:
    """Applies batches by ``refuse`` (an exception to raise for a batch, or None to apply it),
    keeping the stored position as a real destination would (merged, atomically with the data)."""

    refuse: Callable[[Batch], Exception | None]
    name: str = "fake"
    stored: SinkPosition | None = None
    start_error: Exception | None = None
    applied: list[int] = field(default_factory=list)  # offsets of changes, in apply order
    applies: int = 0
    starts: int = 0
    trace: list[tuple[str, Any]] = field(default_factory=list)  # ("position", offsets) | ("dlq", (where, offset))

    def start(self) -> SinkPosition | None:
        self.starts += 1
        if self.start_error is not None:
            raise self.start_error
        return self.stored

    def read_position(self) -> SinkPosition | None:
        return self.stored

    def apply(self, batch: Batch) -> None:
        self.applies += 1
        error = self.refuse(batch)
        if error is not None:
            raise error
        self.applied += [e.offset for e in batch.changes()]
        position = batch.position(self.name, 0)
        self.stored = position if self.stored is None else self.stored.merged(position)
        self.trace.append(("position", position.offsets))

    def close(self) -> None:
        pass


def runner_with(destination: FakeDestination, consumer: FakeConsumer | None = None) -> SinkRunner:
    settings = SinkRunnerSettings(
        group="g", topic_prefix="t.caxton.memory", tables=("entities",), backoff_initial_s=0.001,
        backoff_max_s=0.002, recheck_s=0.01,
    )  # fmt: skip
    runner = SinkRunner(settings, destination)
    dlq = FakeDeadLetters(trace=destination.trace)
    runner._consumer = consumer or FakeConsumer()  # type: ignore[assignment]
    runner._dlq = dlq  # type: ignore[assignment]
    runner._assigned = {P0, P1}
    runner._partitions = {TOPIC: 2}
    return runner


def flush(runner: SinkRunner, events: list[Event]) -> None:
    for event in events:
        runner._buffers.setdefault(event.where, []).append(event)
    runner._oldest = 0.0
    runner._flush()


def dead(runner: SinkRunner) -> list[tuple[int, str]]:
    return cast(FakeDeadLetters, runner._dlq).sent


def commits(runner: SinkRunner) -> list[dict[str, int]]:
    return cast(FakeConsumer, runner._consumer).commits


def refusing(offsets: set[int], error: Callable[[], Exception]) -> Callable[[Batch], Exception | None]:
    """The destination refuses any batch holding a change at one of ``offsets``."""
    return lambda batch: error() if any(e.offset in offsets for e in batch.changes()) else None


def stop_after(runner: SinkRunner, polls: int) -> Callable[[int], None]:
    def hook(n: int) -> None:
        if n >= polls:
            runner.request_stop()

    return hook


def test_one_event_the_destination_refuses_is_proven_by_the_rest_and_set_aside() -> None:
    events = [change(P0, o, o + 1) for o in range(10)] + [change(P1, o, o) for o in range(100, 110)]
    destination = FakeDestination(refusing({4}, lambda: PoisonEvent(None, "Neo4j refused a value")))
    runner = runner_with(destination)
    flush(runner, events)

    assert dead(runner) == [(4, "an event of the batch cannot be applied: Neo4j refused a value")]
    # Every other change applied exactly once (the last write of the held partition carries no data).
    assert sorted(destination.applied) == sorted(e.offset for e in events if e.where != P0 or e.offset != 4)
    assert destination.stored is not None and destination.stored.offsets == {P0: 10, P1: 110}
    # No position covered offset 4 of partition 0 before its dead letter was acknowledged.
    sent = destination.trace.index(("dlq", (P0, 4)))
    assert all(offsets.get(P0, 0) <= 4 for what, offsets in destination.trace[:sent] if what == "position")
    assert commits(runner)[-1] == {str(P0): 10, str(P1): 110}
    assert runner.metrics.healthy


def test_a_lone_refused_event_is_set_aside_once_a_write_without_it_succeeds() -> None:
    destination = FakeDestination(refusing({7}, lambda: PoisonEvent(None, "bad value")))
    runner = runner_with(destination)
    flush(runner, [change(P0, 7, 8)])
    assert [o for o, _ in dead(runner)] == [7]
    assert destination.stored is not None and destination.stored.offsets == {P0: 8}


def test_a_destination_that_refuses_every_event_dead_letters_none_and_stops() -> None:
    """The field report: every write refused (AuthenticationRateLimit), the same event dead-lettered
    about 970 times, then RecursionError. Refusing everything proves nothing about the events."""
    destination = FakeDestination(lambda batch: PoisonEvent(None, "Neo.ClientError.Security.AuthenticationRateLimit"))
    destination.start_error = destination.refuse(Batch([], {}))
    runner = runner_with(destination)
    runner._consumer = FakeConsumer(on_consume=stop_after(runner, 20))  # type: ignore[assignment]
    flush(runner, [change(P0, o, o + 1) for o in range(50)])

    assert dead(runner) == []
    assert commits(runner) == []
    assert destination.stored is None
    assert not runner.metrics.healthy
    assert "refused" in runner.metrics.health_detail


def test_a_fatal_error_stops_once_then_resumes_from_the_stored_position_when_fixed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = [True]
    error = Fatal("Neo4j refused the sink's credentials", hint="fix the password")
    destination = FakeDestination(lambda batch: error if broken[0] else None)
    destination.stored = SinkPosition("fake", {P0: 3, P1: 5})
    destination.start_error = error
    runner = runner_with(destination)
    seen: dict[str, Any] = {}

    def fix_later(_polls: int) -> None:
        if destination.starts == 12 and broken[0]:  # many re-checks later: the operator fixes the cause
            seen["healthy"], seen["detail"], seen["paused"] = (
                runner.metrics.healthy, runner.metrics.health_detail, set(runner._consumer.paused),  # type: ignore[union-attr]
            )  # fmt: skip
            broken[0] = False
            destination.start_error = None

    runner._consumer = FakeConsumer(on_consume=fix_later)  # type: ignore[assignment]
    with caplog.at_level(logging.INFO, logger="replicator.sink"):
        flush(runner, [change(P0, 3, 10), change(P1, 5, 11)])

    assert seen == {"healthy": False, "detail": str(error), "paused": {(TOPIC, 0), (TOPIC, 1)}}
    assert dead(runner) == [] and commits(runner) == [] and destination.applied == []
    assert destination.starts > 10, "the runner re-checks the destination while it waits"
    stopped = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(stopped) == 1, [r.getMessage() for r in caplog.records]
    assert stopped[0].__dict__["error"] == error.message and stopped[0].__dict__["hint"] == "fix the password"
    # Back: the batch is dropped and the partitions re-read from the destination's stored position.
    assert sorted(runner._consumer.seeks) == [(TOPIC, 0, 3), (TOPIC, 1, 5)]  # type: ignore[union-attr]
    assert runner._consumer.paused == set()  # type: ignore[union-attr]
    assert runner.metrics.healthy
    assert any("resuming" in r.getMessage() for r in caplog.records)


def test_a_retryable_error_waits_paused_and_commits_only_after_applying() -> None:
    failures = [3]

    def flaky(batch: Batch) -> Exception | None:
        failures[0] -= 1
        return DestinationUnavailable("Neo4j is restarting") if failures[0] >= 0 else None

    destination = FakeDestination(flaky)
    runner = runner_with(destination)
    flush(runner, [change(P0, 0, 1)])
    assert destination.applies == 4 and destination.applied == [0]
    assert dead(runner) == [] and commits(runner) == [{str(P0): 1}]
    assert runner.metrics.retries._value.get() == 3


def test_events_the_planner_refuses_by_content_are_isolated_without_recursion() -> None:
    """A planner names the event (PoisonEvent with an index): its content is the proof. Thousands of
    them in one batch must not recurse once per event."""
    events = [change(P0, o, o + 1) for o in range(5000)]

    def planner(batch: Batch) -> Exception | None:
        bad = [i for i, e in enumerate(batch.events) if e.record is not None and e.offset % 2 == 0]
        return PoisonEvent(bad[0], "no 'after' image") if bad else None

    destination = FakeDestination(planner)
    runner = runner_with(destination)
    flush(runner, events)
    assert [o for o, _ in dead(runner)] == list(range(0, 5000, 2))
    assert destination.applied == list(range(1, 5000, 2))
    assert destination.stored is not None and destination.stored.offsets == {P0: 5000}


def test_a_refused_event_is_not_set_aside_when_the_proof_fails() -> None:
    """The destination refuses event 2, then (password changed meanwhile) everything: event 2 stays
    unproven, nothing is dead-lettered, and the runner stops on the fatal error."""
    calls = [0]

    def refuse(batch: Batch) -> Exception | None:
        calls[0] += 1
        if calls[0] > 3:
            return Fatal("Neo4j refused the credentials", hint="fix the password")
        return PoisonEvent(None, "bad") if any(e.offset == 2 for e in batch.changes()) else None

    destination = FakeDestination(refuse)
    destination.start_error = Fatal("Neo4j refused the credentials", hint="fix the password")
    runner = runner_with(destination)
    runner._consumer = FakeConsumer(on_consume=stop_after(runner, 5))  # type: ignore[assignment]
    flush(runner, [change(P0, o, o + 1) for o in range(4)])
    assert dead(runner) == []
    assert commits(runner) == []
    assert not runner.metrics.healthy


def heartbeat(where: PartitionKey, offset: int, seq: int) -> Event:
    record = {"source": {"store": "s1", "seq": seq, "ts_ms": 1}, "ts_ms": 1}
    return Event(where.topic, where.partition, offset, -1, HEARTBEAT, record)


def test_the_partition_of_a_suspect_gets_its_heartbeats_once_the_suspect_is_set_aside() -> None:
    events = [change(P0, 0, 1), change(P0, 1, 2), change(P0, 2, 3), heartbeat(P0, 3, 3), change(P1, 0, 4),
              heartbeat(P1, 1, 4)]  # fmt: skip
    destination = FakeDestination(refusing({1}, lambda: PoisonEvent(None, "bad")))
    runner = runner_with(destination)
    flush(runner, events)
    assert [o for o, _ in dead(runner)] == [1]
    stored = destination.stored
    assert stored is not None and stored.offsets == {P0: 4, P1: 2}
    assert {k: h.seq for k, h in stored.heartbeats.items()} == {P0: 3, P1: 4}


def test_isolating_one_refused_event_among_a_thousand_takes_few_writes() -> None:
    events = [change(P0, o, o + 1) for o in range(1000)]
    destination = FakeDestination(refusing({637}, lambda: PoisonEvent(None, "bad")))
    runner = runner_with(destination)
    flush(runner, events)
    assert [o for o, _ in dead(runner)] == [637]
    assert destination.applies <= 2 * 10 + 4, destination.applies  # halving: about 2 log2(n) writes
    assert sorted(destination.applied) == [o for o in range(1000) if o != 637]


def test_a_second_lone_refusal_with_nothing_applied_in_between_is_fatal() -> None:
    """A batch with one change is proven by a position-only write, once: when the next lone change is
    refused as well and nothing applied in between, the destination is the likelier culprit."""
    destination = FakeDestination(refusing({1, 2}, lambda: PoisonEvent(None, "Statement.SyntaxError")))
    destination.start_error = Fatal("still refusing")
    runner = runner_with(destination)
    runner._consumer = FakeConsumer(on_consume=stop_after(runner, 10))  # type: ignore[assignment]
    flush(runner, [change(P0, 1, 1)])
    assert [o for o, _ in dead(runner)] == [1] and runner.metrics.healthy
    flush(runner, [change(P0, 2, 2)])
    assert [o for o, _ in dead(runner)] == [1], "the second lone refusal was set aside without proof"
    assert not runner.metrics.healthy and "none applied since" in runner.metrics.health_detail


def test_a_lone_refusal_after_a_change_applied_is_proven_again() -> None:
    destination = FakeDestination(refusing({1, 3}, lambda: PoisonEvent(None, "bad")))
    runner = runner_with(destination)
    for offset in (1, 2, 3):
        flush(runner, [change(P0, offset, offset)])
    assert [o for o, _ in dead(runner)] == [1, 3]
    assert destination.applied == [2]


def test_when_a_seek_fails_after_a_fatal_stop_the_sink_joins_the_group_again() -> None:
    class NoSeek(FakeConsumer):
        def seek(self, tp: TopicPartition) -> None:
            raise KafkaException(KafkaError(KafkaError._STATE))

    broken = [True]
    destination = FakeDestination(lambda batch: Fatal("refused") if broken[0] else None)
    destination.start_error = None
    runner = runner_with(destination, NoSeek(on_consume=lambda n: broken.__setitem__(0, False)))
    flush(runner, [change(P0, 0, 1)])
    consumer = cast(FakeConsumer, runner._consumer)
    assert consumer.seeks == [("unsubscribe", 0, 0), ("subscribe", 0, 0)]
    assert runner._assigned == set() and runner.metrics.healthy
    assert dead(runner) == [] and commits(runner) == []


def test_a_stop_requested_during_a_fatal_stop_returns_without_committing() -> None:
    destination = FakeDestination(lambda batch: Fatal("refused"))
    destination.start_error = Fatal("refused")
    runner = runner_with(destination)
    runner._consumer = FakeConsumer(on_consume=stop_after(runner, 3))  # type: ignore[assignment]
    flush(runner, [change(P0, 0, 1)])
    assert runner._buffers == {} and commits(runner) == [] and dead(runner) == []
