"""The sink runner's handling of the three kinds of failure, run whole (``SinkRunner.run``) on the
in-memory broker and a fake clock, with a fake destination (no server): retryable waits, fatal stops
and waits for the cause to go, and only an event the destination refuses while the rest of its batch
applies is set aside (issue 17, item 1). Events are built by the source's own converter.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from replicator.errors import Fatal
from replicator.position import PartitionKey, SinkPosition
from replicator.sinks.batch import Batch
from replicator.sinks.clients import SinkClients
from replicator.sinks.errors import DestinationUnavailable, PoisonEvent
from replicator.sinks.runner import SinkRunner
from replicator.sinks.runner_settings import SinkRunnerSettings
from replicator.source.convert import ChangelogRow, convert_change, heartbeat_messages
from replicator.testing.broker import FakeBroker, FakeConsumer
from replicator.testing.clock import FakeClock

PREFIX = "t.caxton.memory"
TOPIC, DLQ = f"{PREFIX}.entities", f"{PREFIX}.dlq"
P0, P1 = PartitionKey(TOPIC, 0), PartitionKey(TOPIC, 1)
ENTITY = {"name": "n", "entity_type": "t", "observations": "[]", "created_at": 1, "updated_at": 1}


@dataclass
class FakeDestination:
    """Applies batches by ``refuse`` (an exception to raise for a batch, or None to apply it),
    keeping the stored position as a real destination would (merged, atomically with the data, and
    never applying again what it covers)."""

    refuse: Callable[[Batch], Exception | None]
    name: str = "fake"
    stored: SinkPosition | None = None
    start_error: Exception | None = None
    applied: list[int] = field(default_factory=list)  # offsets of changes, in apply order
    applied_at: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) of each
    applies: int = 0
    starts: int = 0
    trace: list[tuple[str, dict[PartitionKey, int], int]] = field(
        default_factory=list
    )  # ("position", offsets, DLQ size)
    dead_letters: Callable[[], int] = lambda: 0

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
        changes = batch.unapplied(self.stored).changes()
        self.applied += [e.offset for e in changes]
        self.applied_at += [(e.partition, e.offset) for e in changes]
        position = batch.position(self.name, 0)
        self.stored = position if self.stored is None else self.stored.merged(position)
        self.trace.append(("position", position.offsets, self.dead_letters()))

    def close(self) -> None:
        pass


class Rig:
    """A runner on the in-memory broker: ``publish`` change events, ``run`` until a fake time."""

    def __init__(
        self, destination: FakeDestination, consumer: type[FakeConsumer] = FakeConsumer, topics: bool = True,
        **settings: Any,
    ) -> None:  # fmt: skip
        self.clock = FakeClock()
        self.broker = FakeBroker(self.clock)
        if topics:
            self.broker.create_topic(TOPIC, 2)
        self.destination = destination
        destination.dead_letters = lambda: self.broker.end((DLQ, 0)) if DLQ in self.broker.topics() else 0
        settings = {"backoff_initial_s": 0.001, "backoff_max_s": 0.002, "recheck_s": 0.01, **settings}
        runner_settings = SinkRunnerSettings(group="g", topic_prefix=PREFIX, tables=("entities",), **settings)
        clients = SinkClients(
            consumer=lambda config: consumer(self.broker, dict(config)),
            producer=self.broker.producer,
            create_topic=lambda _kafka, name: self.broker.create_topic(name),
        )
        self.runner = SinkRunner(runner_settings, destination, self.clock, clients)

    def publish(self, where: PartitionKey, seqs: list[int]) -> None:
        """One entity change per seq, appended to ``where`` (offsets follow the partition's end)."""
        producer = self.broker.producer()
        for seq in seqs:
            row = ChangelogRow(seq, "entities", "c", seq, 1, None, json.dumps({"id": seq, **ENTITY}))
            (message,) = convert_change(row, prefix=PREFIX, store_id="s1").messages
            producer.produce(TOPIC, message.value, message.key, partition=where.partition, headers=message.headers)

    def heartbeat(self, where: PartitionKey, seq: int) -> None:
        messages = heartbeat_messages(prefix=PREFIX, store_id="s1", seq=seq, seen_ms=1, partitions={"entities": 2})
        (message,) = [m for m in messages if m.partition == where.partition]
        self.broker.producer().produce(TOPIC, message.value, message.key, partition=where.partition,
                                       headers=message.headers)  # fmt: skip

    def run(self, seconds: float = 5.0) -> None:
        """Run the sink for ``seconds`` of fake time, then stop it (it flushes and returns)."""
        self.clock.after(seconds, self.runner.request_stop)
        self.runner.run()

    def consumer(self) -> FakeConsumer:
        assert self.runner.assignment is not None
        return cast(FakeConsumer, self.runner.assignment.consumer)

    def dead(self) -> list[tuple[int, str]]:
        """(offset, reason) of every dead letter, from the DLQ topic's headers."""
        out = []
        for msg in self.broker.messages(DLQ):
            headers = dict(msg.headers() or [])
            out.append((int(headers["dlq.offset"]), headers["dlq.reason"].decode()))
        return out

    def committed(self) -> dict[str, int]:
        return {f"{t}/{p}": o for (t, p), o in self.broker.committed.get("g", {}).items()}


def refusing(offsets: set[int], error: Callable[[], Exception]) -> Callable[[Batch], Exception | None]:
    """The destination refuses any batch holding a change at one of ``offsets`` of partition 0."""
    return lambda batch: error() if any(e.where == P0 and e.offset in offsets for e in batch.changes()) else None


def test_one_event_the_destination_refuses_is_proven_by_the_rest_and_set_aside() -> None:
    destination = FakeDestination(refusing({4}, lambda: PoisonEvent(None, "Neo4j refused a value")))
    rig = Rig(destination)
    rig.publish(P0, list(range(1, 11)))
    rig.publish(P1, list(range(100, 110)))
    rig.run()

    assert rig.dead() == [(4, "an event of the batch cannot be applied: Neo4j refused a value")]
    # Every other change applied exactly once (the last write of the held partition carries no data).
    assert sorted(destination.applied_at) == sorted([(0, o) for o in range(10) if o != 4] + [(1, o) for o in range(10)])
    assert destination.stored is not None and destination.stored.offsets == {P0: 10, P1: 10}
    # No position covered offset 4 of partition 0 before its dead letter was acknowledged.
    assert all(sent >= 1 for _, offsets, sent in destination.trace if offsets.get(P0, 0) > 4)
    assert rig.committed() == {str(P0): 10, str(P1): 10}
    assert rig.runner.metrics.healthy


def test_a_lone_refused_event_is_set_aside_once_a_write_without_it_succeeds() -> None:
    destination = FakeDestination(refusing({0}, lambda: PoisonEvent(None, "bad value")))
    rig = Rig(destination)
    rig.publish(P0, [8])
    rig.run()
    assert [o for o, _ in rig.dead()] == [0]
    assert destination.stored is not None and destination.stored.offsets == {P0: 1}


def test_a_destination_that_refuses_every_event_dead_letters_none_and_stops() -> None:
    """The field report: every write refused (AuthenticationRateLimit), the same event dead-lettered
    about 970 times, then RecursionError. Refusing everything proves nothing about the events."""
    refusal = PoisonEvent(None, "Neo.ClientError.Security.AuthenticationRateLimit")

    def refuse(batch: Batch) -> Exception:
        destination.start_error = refusal  # the re-checks are refused too
        rig.clock.after(0, rig.runner.request_stop)  # before the first re-check: the stop's own diagnosis
        return refusal

    destination = FakeDestination(refuse)
    rig = Rig(destination)
    rig.publish(P0, list(range(1, 51)))
    rig.run()

    assert rig.dead() == []
    assert rig.committed() == {}
    assert destination.stored is None
    assert not rig.runner.metrics.healthy
    assert "refused" in rig.runner.metrics.health_detail


def test_a_fatal_error_stops_once_then_resumes_from_the_stored_position_when_fixed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = [True]
    error = Fatal("Neo4j refused the sink's credentials", hint="fix the password")

    def refuse(batch: Batch) -> Exception | None:
        if broken[0]:
            destination.start_error = error
            return error
        return None

    destination = FakeDestination(refuse)
    destination.stored = SinkPosition("fake", {P0: 3, P1: 5})
    rig = Rig(destination)
    rig.publish(P0, [1, 2, 3, 10])  # offsets 0..3: the destination holds up to 3
    rig.publish(P1, [4, 5, 6, 7, 8, 11])  # offsets 0..5: the destination holds up to 5
    seen: dict[str, Any] = {}

    def fix_later() -> None:
        if destination.starts >= 12 and broken[0]:  # many re-checks later: the operator fixes the cause
            seen.update(healthy=rig.runner.metrics.healthy, detail=rig.runner.metrics.health_detail,
                        paused=rig.consumer().paused(), dead=rig.dead(), committed=rig.committed(),
                        applied=list(destination.applied))  # fmt: skip
            broken[0] = False
            destination.start_error = None
        else:
            rig.clock.after(0.01, fix_later)

    rig.clock.after(0.01, fix_later)
    with caplog.at_level(logging.INFO, logger="replicator.sink"):
        rig.run()

    assert seen == {"healthy": False, "detail": str(error), "paused": {(TOPIC, 0), (TOPIC, 1)}, "dead": [],
                    "committed": {}, "applied": []}  # fmt: skip
    assert destination.starts > 10, "the runner re-checks the destination while it waits"
    stopped = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(stopped) == 1, [r.getMessage() for r in caplog.records]
    assert stopped[0].__dict__["error"] == error.message and stopped[0].__dict__["hint"] == "fix the password"
    # Back: the batch is dropped and the partitions re-read from the destination's stored position.
    assert destination.applied_at == [(0, 3), (1, 5)]
    assert rig.committed() == {str(P0): 4, str(P1): 6}
    assert rig.consumer().paused() == set()
    assert rig.runner.metrics.healthy
    assert any("resuming" in r.getMessage() for r in caplog.records)


def test_a_retryable_error_waits_paused_and_commits_only_after_applying() -> None:
    failures = [3]
    seen: list[tuple[set[tuple[str, int]], dict[str, int]]] = []

    def flaky(batch: Batch) -> Exception | None:
        failures[0] -= 1
        if failures[0] >= 0:
            if failures[0] < 2:  # from the second attempt on, the first wait has paused the partitions
                seen.append((rig.consumer().paused(), rig.committed()))
            return DestinationUnavailable("Neo4j is restarting")
        return None

    destination = FakeDestination(flaky)
    rig = Rig(destination)
    rig.publish(P0, [1])
    rig.run()
    assert destination.applies == 4 and destination.applied == [0]
    assert seen == [({(TOPIC, 0), (TOPIC, 1)}, {})] * 2
    assert rig.dead() == [] and rig.committed() == {str(P0): 1}
    assert rig.runner.metrics.retries._value.get() == 3


def test_events_the_planner_refuses_by_content_are_isolated_without_recursion() -> None:
    """A planner names the event (PoisonEvent with an index): its content is the proof. Thousands of
    them in one batch must not recurse once per event."""

    def planner(batch: Batch) -> Exception | None:
        bad = [i for i, e in enumerate(batch.events) if e.record is not None and e.offset % 2 == 0]
        return PoisonEvent(bad[0], "no 'after' image") if bad else None

    destination = FakeDestination(planner)
    rig = Rig(destination, batch_max_events=5000)
    rig.publish(P0, list(range(1, 5001)))
    rig.run()
    assert [o for o, _ in rig.dead()] == list(range(0, 5000, 2))
    assert destination.applied == list(range(1, 5000, 2))
    assert destination.stored is not None and destination.stored.offsets == {P0: 5000}


def test_a_refused_event_is_not_set_aside_when_the_proof_fails() -> None:
    """The destination refuses event 2, then (password changed meanwhile) everything: event 2 stays
    unproven, nothing is dead-lettered, and the runner stops on the fatal error."""
    calls = [0]
    fatal = Fatal("Neo4j refused the credentials", hint="fix the password")

    def refuse(batch: Batch) -> Exception | None:
        calls[0] += 1
        if calls[0] > 3:
            destination.start_error = fatal
            return fatal
        return PoisonEvent(None, "bad") if any(e.offset == 2 for e in batch.changes()) else None

    destination = FakeDestination(refuse)
    rig = Rig(destination)
    rig.publish(P0, [1, 2, 3, 4])
    rig.run()
    assert rig.dead() == []
    assert rig.committed() == {}
    assert not rig.runner.metrics.healthy


def test_the_partition_of_a_suspect_gets_its_heartbeats_once_the_suspect_is_set_aside() -> None:
    destination = FakeDestination(refusing({1}, lambda: PoisonEvent(None, "bad")))
    rig = Rig(destination)
    rig.publish(P0, [1, 2, 3])
    rig.heartbeat(P0, 3)
    rig.publish(P1, [4])
    rig.heartbeat(P1, 4)
    rig.run()
    assert [o for o, _ in rig.dead()] == [1]
    stored = destination.stored
    assert stored is not None and stored.offsets == {P0: 4, P1: 2}
    assert {k: h.seq for k, h in stored.heartbeats.items()} == {P0: 3, P1: 4}


def test_isolating_one_refused_event_among_a_thousand_takes_few_writes() -> None:
    destination = FakeDestination(refusing({637}, lambda: PoisonEvent(None, "bad")))
    rig = Rig(destination)
    rig.publish(P0, list(range(1, 1001)))
    rig.run()
    assert [o for o, _ in rig.dead()] == [637]
    assert destination.applies <= 2 * 10 + 4, destination.applies  # halving: about 2 log2(n) writes
    assert sorted(destination.applied) == [o for o in range(1000) if o != 637]


def test_a_second_lone_refusal_with_nothing_applied_in_between_is_fatal() -> None:
    """A batch with one change is proven by a position-only write, once: when the next lone change is
    refused as well and nothing applied in between, the destination is the likelier culprit."""
    refuse = refusing({0, 1}, lambda: PoisonEvent(None, "Statement.SyntaxError"))

    def refuse_then_stay_down(batch: Batch) -> Exception | None:
        if any(e.offset == 1 for e in batch.changes()):
            destination.start_error = Fatal("still refusing")
            rig.clock.after(0, rig.runner.request_stop)  # before the first re-check: the stop's own diagnosis
        return refuse(batch)

    destination = FakeDestination(refuse_then_stay_down)
    rig = Rig(destination)
    rig.publish(P0, [1])
    after_first: dict[str, Any] = {}

    def second() -> None:
        after_first.update(dead=[o for o, _ in rig.dead()], healthy=rig.runner.metrics.healthy)
        rig.publish(P0, [2])

    rig.clock.after(1.0, second)
    rig.run()
    assert after_first == {"dead": [0], "healthy": True}
    assert [o for o, _ in rig.dead()] == [0], "the second lone refusal was set aside without proof"
    assert not rig.runner.metrics.healthy and "none applied since" in rig.runner.metrics.health_detail


def test_a_lone_refusal_after_a_change_applied_is_proven_again() -> None:
    destination = FakeDestination(refusing({0, 2}, lambda: PoisonEvent(None, "bad")))
    rig = Rig(destination)
    for at, seq in ((0.0, 1), (1.0, 2), (2.0, 3)):  # three batches, one change each
        rig.clock.after(at, lambda seq=seq: rig.publish(P0, [seq]))  # type: ignore[misc]
    rig.run()
    assert [o for o, _ in rig.dead()] == [0, 2]
    assert destination.applied == [1]


def test_when_a_seek_fails_after_a_fatal_stop_the_sink_joins_the_group_again() -> None:
    class NoSeek(FakeConsumer):
        def seek(self, partition: TopicPartition) -> None:
            raise KafkaException(KafkaError(KafkaError._STATE))

    broken = [True]

    def refuse(batch: Batch) -> Exception | None:
        if broken[0]:
            rig.clock.after(0.05, lambda: broken.__setitem__(0, False))
            return Fatal("refused")
        return None

    destination = FakeDestination(refuse)
    rig = Rig(destination, NoSeek)
    rig.publish(P0, [1])
    rig.run()
    # The member left and joined again: its partitions came back through on_assign at the stored
    # position (none: the beginning), so the dropped batch was read again and applied once.
    assert destination.applied_at == [(0, 0)]
    assert rig.runner.metrics.healthy
    assert rig.dead() == [] and rig.committed() == {str(P0): 1}


def test_a_stop_requested_during_a_fatal_stop_returns_without_committing() -> None:
    def refuse(batch: Batch) -> Exception:
        destination.start_error = Fatal("refused")
        return Fatal("refused")

    destination = FakeDestination(refuse)
    rig = Rig(destination)
    rig.publish(P0, [1])
    rig.run(seconds=1.0)
    assert len(rig.runner.batcher) == 0 and rig.committed() == {} and rig.dead() == []
    assert destination.applies == 1


def join_the_group(rig: Rig) -> None:
    """A second instance of the sink joins its group: the range assignor gives it partition 1."""
    rig.broker.consumer({"group.id": "g"}).subscribe([TOPIC])


def test_partitions_revoked_mid_batch_are_neither_applied_nor_committed_and_nothing_twice() -> None:
    destination = FakeDestination(lambda batch: None)
    rig = Rig(destination)
    rig.publish(P0, [1, 2, 3, 4, 5])
    rig.publish(P1, [6, 7, 8, 9, 10])
    held: list[int] = []

    def join() -> None:
        held.append(len(rig.runner.batcher))  # read, not yet due (200 ms)
        join_the_group(rig)

    rig.clock.after(0.05, join)
    rig.run()
    assert held == [10] and destination.applies >= 1
    assert destination.applied_at == [(0, o) for o in range(5)]  # partition 1 is the other instance's
    assert rig.committed() == {str(P0): 5}


def test_a_batch_being_retried_loses_the_events_of_partitions_revoked_meanwhile() -> None:
    attempts: list[list[tuple[int, int]]] = []

    def unavailable_until_the_rebalance(batch: Batch) -> Exception | None:
        attempts.append([(e.partition, e.offset) for e in batch.changes()])
        if len(attempts) == 1:
            rig.clock.after(0.05, lambda: join_the_group(rig))  # during the backoff wait (0.3 s)
            return DestinationUnavailable("Neo4j is restarting")
        return None

    destination = FakeDestination(unavailable_until_the_rebalance)
    rig = Rig(destination, backoff_initial_s=0.3, backoff_max_s=0.3)
    rig.publish(P0, [1, 2])
    rig.publish(P1, [3, 4])
    rig.run()
    assert attempts[0] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert attempts[1] == [(0, 0), (0, 1)], "the retry still carried the revoked partition's events"
    # Partition 0 came back to this instance at the destination's position: read again, applied once.
    assert destination.applied_at == [(0, 0), (0, 1)]
    assert rig.committed() == {str(P0): 2}


def test_retries_of_an_unavailable_destination_back_off_exponentially_up_to_the_cap() -> None:
    tried_at: list[float] = []

    def down_for_eight_attempts(batch: Batch) -> Exception | None:
        tried_at.append(rig.clock.monotonic())
        return DestinationUnavailable("Neo4j is restarting") if len(tried_at) <= 8 else None

    destination = FakeDestination(down_for_eight_attempts)
    rig = Rig(destination, backoff_initial_s=0.2, backoff_max_s=5.0)
    rig.publish(P0, [1])
    rig.run(seconds=60)
    waits = [round(b - a, 6) for a, b in itertools.pairwise(tried_at)]
    assert waits == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])
    assert destination.applied == [0] and rig.committed() == {str(P0): 1}
    assert rig.runner.metrics.retries._value.get() == 8 and rig.runner.metrics.healthy


def test_a_sink_started_before_its_source_waits_for_the_change_topics(caplog: pytest.LogCaptureFixture) -> None:
    destination = FakeDestination(lambda batch: None)
    rig = Rig(destination, topics=False)

    def source_starts() -> None:
        rig.broker.create_topic(TOPIC, 2)
        rig.publish(P0, [1, 2])

    rig.clock.after(3.0, source_starts)
    with caplog.at_level(logging.WARNING, logger="replicator.sink"):
        rig.run(seconds=10.0)
    assert [r.getMessage() for r in caplog.records].count("waiting for the change topics") == 1
    assert destination.applied_at == [(0, 0), (0, 1)] and rig.committed() == {str(P0): 2}


def test_a_value_that_does_not_decode_is_dead_lettered_and_the_rest_applies() -> None:
    destination = FakeDestination(lambda batch: None)
    rig = Rig(destination)
    rig.publish(P0, [1])
    rig.broker.producer().produce(TOPIC, b"not avro", b"k", partition=0)
    rig.publish(P0, [3])
    rig.run()
    assert [o for o, _ in rig.dead()] == [1] and rig.dead()[0][1].startswith("undecodable: ")
    assert destination.applied_at == [(0, 0), (0, 2)]
    assert destination.stored is not None and destination.stored.offsets == {P0: 3}
    assert rig.committed() == {str(P0): 3}
