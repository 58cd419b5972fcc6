"""The sink runner's batcher: decoded events held per partition until a batch is due."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from replicator.position import PartitionKey
from replicator.sinks.batch import Event


class Batcher:
    """Per-partition buffers flushed together when they hold ``max_events`` or the oldest event is
    ``max_age_ms`` old (by ``clock``, monotonic seconds). Events keep offset order per partition,
    hence per key. Not thread-safe (the runner's thread)."""

    def __init__(self, max_events: int, max_age_ms: int, clock: Callable[[], float]) -> None:
        self.max_events = max_events
        self.max_age_ms = max_age_ms
        self._clock = clock
        self._buffers: dict[PartitionKey, list[Event]] = {}
        self._oldest: float | None = None  # when the oldest held event arrived

    def __len__(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def partitions(self) -> set[PartitionKey]:
        """The partitions with events held."""
        return set(self._buffers)

    def add(self, event: Event) -> None:
        self._buffers.setdefault(event.where, []).append(event)
        if self._oldest is None:
            self._oldest = self._clock()

    def due(self) -> bool:
        """Whether the held events make a batch now (size or age)."""
        if self._oldest is None:
            return False
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
        if not self._buffers:
            self._oldest = None

    def clear(self) -> None:
        self._buffers.clear()
        self._oldest = None
