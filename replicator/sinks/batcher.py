"""The sink runner's batcher: decoded events held per partition until a batch is due."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from replicator.position import PartitionKey
from replicator.sinks.batch import Event


class Batcher:
    """Per-partition buffers flushed together when they hold ``max_events``, when the oldest event is
    ``max_age_ms`` old (by ``clock``, monotonic seconds), or when a heartbeat is held on every partition
    the sink owns: that is a complete watermark step (design §4), and applying it at once is what lets
    a cutover's drain end as soon as the source has published up to the fence, instead of a batch age
    later. A source with a backlog sends no heartbeats, so bulk batches still fill by size. Events keep
    offset order per partition, hence per key. Not thread-safe (the runner's thread)."""

    def __init__(self, max_events: int, max_age_ms: int, clock: Callable[[], float]) -> None:
        self.max_events = max_events
        self.max_age_ms = max_age_ms
        self._clock = clock
        self._buffers: dict[PartitionKey, list[Event]] = {}
        self._oldest: float | None = None  # when the oldest held event arrived
        self._heartbeats: set[PartitionKey] = set()  # partitions with a heartbeat held

    def __len__(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def partitions(self) -> set[PartitionKey]:
        """The partitions with events held."""
        return set(self._buffers)

    def add(self, event: Event) -> None:
        self._buffers.setdefault(event.where, []).append(event)
        if event.is_heartbeat:
            self._heartbeats.add(event.where)
        if self._oldest is None:
            self._oldest = self._clock()

    def due(self, owned: Collection[PartitionKey] = ()) -> bool:
        """Whether the held events make a batch now: size, age, or a heartbeat held on every partition
        of ``owned`` (the partitions the sink is assigned; empty: that rule is off)."""
        if self._oldest is None:
            return False
        if owned and self._heartbeats.issuperset(owned):
            return True
        return len(self) >= self.max_events or (self._clock() - self._oldest) * 1000 >= self.max_age_ms

    def drain(self) -> list[Event]:
        """Every held event (partitions in key order, offset order within each); the batcher is empty after."""
        events = [e for key in sorted(self._buffers) for e in self._buffers[key]]
        self.clear()
        return events

    def drop(self, partitions: Iterable[PartitionKey]) -> None:
        """Forget what is held for ``partitions`` (revoked: their new owner reads them again)."""
        for key in partitions:
            self._buffers.pop(key, None)
            self._heartbeats.discard(key)
        if not self._buffers:
            self._oldest = None

    def clear(self) -> None:
        self._buffers.clear()
        self._heartbeats.clear()
        self._oldest = None
