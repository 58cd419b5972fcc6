"""What the sink runner hands a destination: decoded events of one or more partitions, in offset
order per partition, and the position the destination must store with them. Pure data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from replicator.errors import Fatal
from replicator.events.avro import HEARTBEAT
from replicator.events.headers import NO_HEADERS, Parsed
from replicator.position import Heartbeat, PartitionKey, SinkPosition


class StoreMismatch(Fatal):
    """Events of another store than the destination (or the rest of the batch) holds: a namespace
    (Neo4j entity label, Qdrant collection) replicates one store; mixing two would make neither equal."""


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
    #: The record's headers (``replicator.events.headers``): for a tombstone, its table and the seq
    #: of the delete it follows; for a heartbeat, the snapshot the stream follows.
    headers: Parsed = NO_HEADERS

    @property
    def where(self) -> PartitionKey:
        return PartitionKey(self.topic, self.partition)

    @property
    def seq(self) -> int | None:
        """The change's (or heartbeat's) source seq; for a tombstone the seq of its delete (header),
        None when it has none."""
        return self.headers.seq if self.record is None else int(self.record["source"]["seq"])

    @property
    def is_heartbeat(self) -> bool:
        return self.schema == HEARTBEAT

    @property
    def is_tombstone(self) -> bool:
        """A Kafka tombstone: a row's key with a null value, written after its ``d`` event and what
        compaction leaves of the key. (A dead-lettered event also has no record, but its value.)"""
        return self.record is None and self.raw_value is None and self.key is not None and self.key >= 0

    @property
    def store(self) -> str | None:
        """The store identity the event comes from (``source.store``); None for a tombstone."""
        return None if self.record is None else str(self.record["source"]["store"])


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
        applied = snapshot = 0
        for event in self.events:
            if event.offset >= self.held.get(event.where, event.offset + 1):
                continue
            offsets[event.where] = max(offsets.get(event.where, 0), event.offset + 1)
            if event.record is None:
                continue
            if event.is_heartbeat:
                src = event.record["source"]
                heartbeats[event.where] = Heartbeat(int(src["seq"]), int(src["ts_ms"]))
                snapshot = max(snapshot, event.headers.snapshot_seq or 0)
            else:
                applied = max(applied, int(event.record["source"]["seq"]))
        return SinkPosition(sink, offsets, heartbeats, dict(self.partitions), applied, now_ms, snapshot_seq=snapshot)

    def store(self) -> str | None:
        """The one store identity the batch's events (heartbeats included) come from; None when none
        carries one (only tombstones). Raises StoreMismatch when they name two stores."""
        stores = {s for s in (e.store for e in self.events) if s is not None}
        if len(stores) > 1:
            raise StoreMismatch(
                f"the change topics hold events of {len(stores)} stores ({', '.join(sorted(stores))})",
                hint="two sources publish under one topic prefix: give each store its own --topic-prefix",
            )
        return next(iter(stores), None)

    def unapplied(self, stored: SinkPosition | None) -> Batch:
        """This batch with the events before ``stored``'s offsets blanked (no record, no tombstone:
        nothing to apply; indices and offsets kept for PoisonEvent and the position). The destination
        applied every one of them (its position is written with the data); a runner that fell back to
        Kafka's committed offsets (they lag the destination) re-reads some. Leaving them out keeps the
        promise tombstone collection relies on: every event applied has a seq above its partition's
        last heartbeat applied."""
        if stored is None or all(e.offset >= stored.offsets.get(e.where, 0) for e in self.events):
            return self
        return Batch([_covered(e) if e.offset < stored.offsets.get(e.where, 0) else e for e in self.events],
                     self.partitions, self.held)  # fmt: skip

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


def _covered(event: Event) -> Event:
    """``event`` as a destination must see it when its position already covers it: nothing to apply
    (a non-empty raw value tells it from a tombstone), its offset still counted."""
    return Event(event.topic, event.partition, event.offset, event.key, None, None, event.raw_key, b"")
