"""The sink runner decodes the messages the consumer already holds while a batch is applied
(``DecodeAhead``): on the in-memory broker and a fake clock, with the fake destination of the fault
tests. What must not change: every change applied once and in offset order per partition through
retries and fatal stops, and a revoke served while reading ahead keeps the revoked partition out of
the batch being applied."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Message

from replicator.errors import Fatal
from replicator.sinks.batch import Batch, Event
from replicator.sinks.decode import EventDecoder
from replicator.sinks.errors import DestinationUnavailable
from tests.unit.test_sink_runner_faults import P0, P1, FakeDestination, Rig, join_the_group


def test_the_next_messages_are_decoded_on_another_thread_while_a_batch_is_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: dict[int, str] = {}  # offset -> the thread that decoded it
    next_batch = threading.Event()
    decode = EventDecoder.decode

    def watched(self: EventDecoder, msg: Message) -> Event:
        decoded[int(msg.offset() or 0)] = threading.current_thread().name
        if {2, 3} <= decoded.keys():
            next_batch.set()
        return decode(self, msg)

    monkeypatch.setattr(EventDecoder, "decode", watched)
    during_first_apply: list[bool] = []

    def slow_apply(batch: Batch) -> None:
        if batch.changes()[0].offset == 0:  # the first batch waits (real time) for the next one's decoding
            during_first_apply.append(next_batch.wait(5))

    destination = FakeDestination(slow_apply)
    rig = Rig(destination, batch_max_events=2)
    rig.publish(P0, [1, 2, 3, 4, 5, 6])
    rig.run()
    assert during_first_apply == [True], "the next batch was not decoded while the first was applied"
    runner_thread = threading.current_thread().name
    assert decoded[2] != runner_thread and decoded[3] != runner_thread
    assert decoded[0] == runner_thread  # the first batch: nothing applied yet to overlap with
    assert destination.applied_at == [(0, o) for o in range(6)]
    assert rig.committed() == {str(P0): 6}


def test_through_a_retry_and_a_fatal_stop_every_change_is_applied_once_in_order() -> None:
    applies = {"n": 0}

    def unavailable_then_fatal(batch: Batch) -> Exception | None:
        applies["n"] += 1
        if applies["n"] == 2:
            return DestinationUnavailable("Neo4j is restarting")
        if applies["n"] == 4:
            return Fatal("the namespace belongs to another store", hint="fixed by the next start")
        return None

    destination = FakeDestination(unavailable_then_fatal)
    rig = Rig(destination, batch_max_events=4)
    rig.publish(P0, list(range(1, 11)))
    rig.publish(P1, list(range(11, 21)))
    rig.run()
    assert applies["n"] > 5
    for partition in (0, 1):
        offsets = [o for p, o in destination.applied_at if p == partition]
        assert offsets == list(range(10)), (partition, offsets)
    assert rig.committed() == {str(P0): 10, str(P1): 10}


def test_a_revoke_served_while_reading_ahead_keeps_the_revoked_partition_out_of_the_batch() -> None:
    not_owned: list[tuple[int, int]] = []

    def owned_only(batch: Batch) -> None:
        assert rig.runner.assignment is not None
        not_owned.extend((e.partition, e.offset) for e in batch.events if e.where not in rig.runner.assignment.keys)

    destination = FakeDestination(owned_only)
    rig = Rig(destination)  # batches by age: 200 ms
    rig.publish(P0, [1, 2])
    rig.publish(P1, [3, 4])
    # The second member joins as the batch comes due: the runner's first read of the consumer after
    # that is the read ahead of the flush, which serves the revoke of partition 1.
    rig.clock.after(0.2, lambda: join_the_group(rig))
    rig.run()
    assert not_owned == [], "events of a partition no longer owned were applied"
    assert destination.applied_at == [(0, 0), (0, 1)]  # partition 1 is the other member's
    assert rig.committed() == {str(P0): 2}
