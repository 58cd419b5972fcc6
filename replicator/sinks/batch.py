"""What the sink runner hands a destination: decoded events of one or more partitions, in offset
order per partition, and the position the destination must store with them. Pure data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from replicator.events.avro import HEARTBEAT
from replicator.position import Heartbeat, PartitionKey, SinkPosition


@dataclass(frozen=True)
class Event:
    """One Kafka message, decoded. ``record`` is None for a tombstone (a delete's null value)."""

    topic: str
    partition: int
    offset: int
    key: int | None  # the row id from the Key schema (-1 for heartbeats)
    schema: str | None  # e.g. caxton.memory.EntityChange; None for a tombstone
    record: dict[str, Any] | None
    raw_key: bytes | None = None
    raw_value: bytes | None = None

    @property
    def where(self) -> PartitionKey:
        return PartitionKey(self.topic, self.partition)

    @property
    def seq(self) -> int | None:
        """The change's (or heartbeat's) source seq; None for a tombstone."""
        return None if self.record is None else int(self.record["source"]["seq"])

    @property
    def is_heartbeat(self) -> bool:
        return self.schema == HEARTBEAT


@dataclass(frozen=True)
class Batch:
    """Events to apply together. ``partitions`` is how many partitions each topic has now.

    ``held`` caps the position per partition: the offset of an event not applied yet (a suspect the
    runner is proving poison), so a write of the events after it never claims it as done."""

    events: Sequence[Event]
    partitions: dict[str, int]
    held: Mapping[PartitionKey, int] = field(default_factory=dict)

    def position(self, sink: str, now_ms: int) -> SinkPosition:
        """The position this batch advances ``sink`` to: next offsets, last heartbeat per partition,
        highest change seq; events at or after a ``held`` offset count for none of them. Merge it into
        the stored one with SinkPosition.merged."""
        offsets: dict[PartitionKey, int] = {}
        heartbeats: dict[PartitionKey, Heartbeat] = {}
        applied = 0
        for event in self.events:
            if event.offset >= self.held.get(event.where, event.offset + 1):
                continue
            offsets[event.where] = max(offsets.get(event.where, 0), event.offset + 1)
            if event.record is None:
                continue
            if event.is_heartbeat:
                src = event.record["source"]
                heartbeats[event.where] = Heartbeat(int(src["seq"]), int(src["ts_ms"]))
            else:
                applied = max(applied, int(event.record["source"]["seq"]))
        return SinkPosition(sink, offsets, heartbeats, dict(self.partitions), applied, now_ms)

    def changes(self) -> list[Event]:
        """The events a destination applies (no heartbeats, no tombstones), in batch order."""
        return [e for e in self.events if e.record is not None and not e.is_heartbeat]

    def split(self) -> tuple[Batch, Batch]:
        """Halves, for isolating a poison event. Order within each half is kept."""
        middle = len(self.events) // 2
        return (
            Batch(self.events[:middle], self.partitions, self.held),
            Batch(self.events[middle:], self.partitions, self.held),
        )


def set_aside(event: Event) -> Event:
    """``event`` as a destination must see it once dead-lettered: no record and no key (neither a
    change nor a tombstone of any row), so nothing is applied, but its offset still counts for the
    position of the batch that carries it."""
    return Event(event.topic, event.partition, event.offset, None, None, None, event.raw_key, event.raw_value)
