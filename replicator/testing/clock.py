"""A fake Clock for unit tests: time moves only when the code under test sleeps or waits (or the
test calls ``advance``), and callbacks scheduled with ``at`` run when time reaches them, so a test
says "stop the daemon at t=12 s" and a run of minutes takes milliseconds. Not thread-safe: the code
under test runs on the test's thread."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable


class FakeClock:
    """``monotonic()`` starts at ``start``; ``time()`` is ``wall_offset`` plus it. ``sleeps`` records
    every sleep and wait asked for (seconds), for asserting backoff."""

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self.now = start
        self.wall_offset = wall_offset
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall_offset + self.now

    def at(self, when: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` once monotonic time reaches ``when`` (at once if it already has, on the
        next advance)."""
        heapq.heappush(self._timers, (when, next(self._order), callback))

    def after(self, seconds: float, callback: Callable[[], None]) -> None:
        self.at(self.now + seconds, callback)

    def advance(self, seconds: float, until: threading.Event | None = None) -> None:
        """Move time forward by ``seconds``, running due callbacks in time order; stops early (at
        the callback's time) when one sets ``until``."""
        deadline = self.now + max(0.0, seconds)
        while self._timers and self._timers[0][0] <= deadline:
            when, _, callback = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            callback()
            if until is not None and until.is_set():
                return
        self.now = deadline

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.sleeps.append(seconds)
        if not event.is_set():
            self.advance(seconds, until=event)
        return event.is_set()
