"""Sink positions (the sweep a snapshot makes due), record headers, a batch's store. Pure."""

from __future__ import annotations

import pytest

from replicator.events import headers
from replicator.position import Heartbeat, PartitionKey, SinkPosition
from replicator.sinks.batch import Batch, StoreMismatch
from replicator.testing.events import Stream, entity_image


def _position(marks: dict[int, int], snapshot: int, swept: int = 0) -> SinkPosition:
    beats = {PartitionKey("t", p): Heartbeat(seq, 1) for p, seq in marks.items()}
    return SinkPosition("s", {}, beats, {"t": 2}, 0, 0, snapshot_seq=snapshot, swept_seq=swept)


def test_a_sweep_is_due_once_every_partition_passed_the_snapshot_and_only_once() -> None:
    assert _position({0: 50}, 40).sweep_due() is None  # partition 1 has no heartbeat: no watermark
    assert _position({0: 50, 1: 39}, 40).sweep_due() is None  # partition 1 may still hold snapshot rows
    assert _position({0: 50, 1: 40}, 40).sweep_due() == 40
    assert _position({0: 50, 1: 40}, 40, swept=40).sweep_due() is None
    assert _position({0: 50, 1: 40}, 0).sweep_due() is None  # an older source: no snapshot named


def test_positions_keep_the_snapshot_and_sweep_through_json_and_merges() -> None:
    stored = _position({0: 50, 1: 40}, 40, swept=40)
    assert SinkPosition.from_json(stored.to_json()) == stored
    assert SinkPosition.from_json('{"sink": "old"}').swept_seq == 0  # written by an older version
    merged = stored.merged(_position({0: 60, 1: 60}, 55))
    assert (merged.snapshot_seq, merged.swept_seq, merged.sweep_due()) == (55, 40, 55)


def test_headers_round_trip_and_malformed_ones_read_as_none() -> None:
    assert headers.parse(headers.make("entities", 7)) == headers.Parsed("entities", 7, None)
    assert headers.parse(headers.make("heartbeat", 9, 3)).snapshot_seq == 3
    assert headers.parse([("replicator.seq", b"x")]) == headers.Parsed()
    assert headers.parse(None) == headers.Parsed()


def test_a_batch_names_its_one_store_and_refuses_two() -> None:
    s = Stream()
    one = s.entity("c", 1, entity_image(1, "a", "t", []))
    assert Batch([one, s.tombstone(2, 1)], {}).store() == "sample"
    assert Batch([s.tombstone(2, 1)], {}).store() is None
    other = s.entity("c", 3, entity_image(2, "b", "t", []))
    assert other.record is not None
    other.record["source"] = {**other.record["source"], "store": "elsewhere"}
    with pytest.raises(StoreMismatch, match="2 stores"):
        Batch([one, other], {}).store()


def test_a_batch_leaves_out_what_the_stored_position_covers() -> None:
    s = Stream()
    events = [s.entity("c", n, entity_image(n, f"e{n}", "t", [])) for n in range(1, 5)]  # offsets 0..3
    batch = Batch(events, {s.entities: 1})
    assert batch.unapplied(None) is batch
    stored = SinkPosition("x", {PartitionKey(s.entities, 0): 2})
    left = batch.unapplied(stored)
    assert [e.offset for e in left.events] == [0, 1, 2, 3]  # indices kept for PoisonEvent
    assert [e.record is not None for e in left.events] == [False, False, True, True]
    assert not any(e.is_tombstone for e in left.events)
    assert left.position("x", 0).offsets == batch.position("x", 0).offsets
    assert batch.unapplied(SinkPosition("x", {PartitionKey("other", 0): 9})) is batch
