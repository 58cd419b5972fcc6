"""A sink applies a complete watermark step at once (issue 14, item 2): when every partition it owns
holds a heartbeat, its batch is due, however young; a heartbeat on only some of them changes nothing,
and without heartbeats (a source working through a backlog) batches still wait for size or age.
Run whole on the in-memory broker and a fake clock (time moves only when the runner waits)."""

from __future__ import annotations

from typing import Any

from replicator.events.avro import HEARTBEAT
from replicator.sinks.batch import Batch, Event
from replicator.sinks.batcher import Batcher
from tests.unit.test_sink_runner_faults import P0, P1, FakeDestination, Rig

#: A batch age no test reaches: a flush before it is the heartbeat rule's doing.
LONG_AGE_MS = 60_000


def timed_rig(**settings: Any) -> tuple[Rig, list[float]]:
    """A rig whose destination records the fake time of every apply (seconds since the run began)."""
    times: list[float] = []
    rig: Rig

    def record(_batch: Batch) -> None:
        times.append(rig.clock.now - started)

    rig = Rig(FakeDestination(record), batch_max_age_ms=LONG_AGE_MS, **settings)
    started = rig.clock.now
    return rig, times


def test_heartbeats_on_every_owned_partition_flush_the_batch_at_once() -> None:
    rig, times = timed_rig()
    rig.publish(P0, [1, 2])
    rig.publish(P1, [3])
    rig.heartbeat(P0, 3)
    rig.heartbeat(P1, 3)
    rig.run(30.0)
    assert rig.destination.applied == [0, 1, 0]
    assert times and times[0] < 1.0, f"applies at {times}: waited for the batch age"
    stored = rig.destination.stored
    assert stored is not None and stored.watermark() is not None
    assert stored.watermark().seq == 3  # type: ignore[union-attr]


def test_a_heartbeat_on_some_partitions_only_waits_for_the_rest() -> None:
    rig, times = timed_rig()
    rig.publish(P0, [1])
    rig.heartbeat(P0, 1)  # P1's heartbeat of the same transaction has not arrived
    rig.clock.after(5.0, lambda: rig.heartbeat(P1, 1))
    rig.run(30.0)
    assert times, "nothing applied"
    assert 5.0 <= times[0] < 6.0, f"applied at {times[0]:.2f}s: before the step was complete, or long after"


def test_without_heartbeats_a_batch_still_waits_for_its_age() -> None:
    rig, times = timed_rig(batch_max_events=1000)
    rig.publish(P0, [1, 2, 3])
    rig.clock.after(LONG_AGE_MS / 1000 + 5, rig.runner.request_stop)
    rig.runner.run()
    assert times and times[0] >= LONG_AGE_MS / 1000, f"applied at {times[0]:.2f}s, before the batch age"


def test_the_batcher_forgets_heartbeats_of_revoked_partitions_and_after_a_drain() -> None:
    batcher = Batcher(1000, LONG_AGE_MS, lambda: 0.0)
    for where in (P0, P1):
        batcher.add(Event(where.topic, where.partition, 0, -1, HEARTBEAT, {"source": {"seq": 1}}))
    batcher.add(Event(P0.topic, P0.partition, 1, 7, "caxton.memory.EntityChange", {"source": {"seq": 2}}))
    assert batcher.due({P0, P1})
    assert not batcher.due(set())  # the rule is off without owned partitions; age and size decide
    batcher.drop([P1])
    assert not batcher.due({P0, P1})
    batcher.drain()
    assert not batcher.due({P0})
