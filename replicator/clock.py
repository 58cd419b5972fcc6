"""Time as the daemons see it: a protocol, so a unit test drives heartbeats, backoff and batch ages
with a fake clock (``replicator.testing.clock``) instead of sleeping, and the system's clock."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds for intervals, wall seconds for timestamps, and waiting. Thread-safe."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Block until ``event`` is set or ``seconds`` passed; return whether it is set."""
        ...


class SystemClock:
    """The process's clocks: ``time.monotonic``, ``time.time``, ``time.sleep``, ``Event.wait``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)


SYSTEM_CLOCK = SystemClock()
