"""When the source daemon acts, apart from what it does: the heartbeat policy, the backoff while Kafka
or the store is unavailable, and the two-signal stop. Each reads time only through an injected
``Clock`` (``replicator.clock``), so unit tests drive them with a fake one."""

from __future__ import annotations

import threading

from replicator.clock import Clock


class SourceAborted(Exception):
    """Raised by the second stop request: leave at once, without draining."""


class StopSignal:
    """The first ``request`` asks for a drained stop; the second raises SourceAborted (in whoever asks:
    a signal handler, so the main thread leaves at once). ``request`` is safe from any thread."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._event = threading.Event()
        self.requests = 0

    def request(self) -> None:
        self.requests += 1
        self._event.set()
        if self.requests > 1:
            raise SourceAborted

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less when a stop is requested meanwhile; returns whether one is."""
        return self._clock.wait(self._event, seconds)


class Backoff:
    """Capped exponential backoff: ``first_s``, doubling up to ``cap_s``; ``reset`` after a success."""

    def __init__(self, cap_s: float, first_s: float = 0.1) -> None:
        self.cap_s = cap_s
        self.first_s = first_s
        self.delay = 0.0

    def next(self) -> float:
        """The next wait, in seconds."""
        self.delay = min(self.cap_s, max(self.first_s, self.delay * 2))
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0


class HeartbeatPolicy:
    """When a heartbeat is due (design §4). A heartbeat promises the sinks that every change up to its
    seq is published: it goes out every ``interval_s`` while idle, and once the backlog is drained, at
    most one per ``min_gap_s``, so a busy stream still moves the sinks' watermarks (a cutover's drain
    waits for them) without one per transaction. When a poll finds nothing new (the writers paused,
    as under a cutover's fence), the last changes are covered after ``quiet_gap_s``: the drain then
    waits a poll and this gap, not the busy stream's min gap."""

    def __init__(self, interval_s: float, min_gap_s: float, clock: Clock, quiet_gap_s: float | None = None) -> None:
        self.interval_s = interval_s
        self.min_gap_s = min_gap_s
        self.quiet_gap_s = min_gap_s if quiet_gap_s is None else min(quiet_gap_s, min_gap_s)
        self._clock = clock
        self.last = 0.0  # monotonic time of the last committed heartbeat; 0: none yet
        self.seq = -1  # seq of the last committed heartbeat

    def since(self) -> float:
        return self._clock.monotonic() - self.last

    def due(self, committed_seq: int) -> bool:
        """Asked by a poll that found nothing new to publish: due every interval while idle, and as
        soon as the quiet gap allows when published changes are not yet covered by one (a batch that
        drained the backlog inside the min gap went out without a heartbeat, and the sinks' watermarks
        wait for the next one)."""
        since = self.since()
        return since >= self.interval_s or (self.seq < committed_seq and since >= self.quiet_gap_s)

    def with_drained_batch(self) -> bool:
        """Whether a transaction that drains the backlog carries heartbeats (the min gap has passed)."""
        return self.since() >= self.min_gap_s

    def committed(self, seq: int) -> None:
        self.seq = seq
        self.last = self._clock.monotonic()

    def age(self) -> float:
        """Seconds since the last heartbeat; 0 before the first."""
        return self.since() if self.last else 0.0

    def idle_wait(self, poll_min_s: float, poll_max_s: float) -> float:
        """How long an idle poll waits: longer the longer the store has been quiet, within the bounds."""
        return min(poll_max_s, max(poll_min_s, self.since() / 5))
