"""A writer thread at a target rate, for the agents that write to Neo4j after a cutover (the
reverse-rollback tests and bench/rollback_pause.py): counts its writes, the writes the rollback's
fence refused, the writes that lost a race with another writer's delete, any other failure, and its
achieved rate. Blocking (a thread)."""

from __future__ import annotations

import random
import threading
import time
from typing import Final

#: What the rollback's fence says to a refused writer (replicator/cutover/rollback.py).
FENCE_REFUSAL: Final = "memory store moved back"
#: Neo4j's answer to a write that lost a race with a concurrent delete (read committed: a node matched,
#: then deleted and committed by another writer before this one locked it). Nothing was written.
LOST_RACE: Final = "Neo.ClientError.Statement.EntityNotFound"
#: Neo4j's answer while it starts (the server up, its database not yet): the write did not happen.
STARTING: Final = "Neo.TransientError.General.DatabaseUnavailable"


class Unavailable(Exception):
    """The server is away (restarting): the write did not happen, or it shows in the graph."""


class PacedWriter:
    """One write every ``1 / rate_per_s`` seconds (slower when a write takes longer; after a stall it
    resumes its pace instead of bursting to catch up). Subclasses define ``_write``. Start ``thread``,
    set ``stopping``, join ``thread``."""

    def __init__(self, rate_per_s: float, seed: int) -> None:
        self.period, self.rng = 1.0 / rate_per_s, random.Random(seed)
        self.done = self.refused = self.lost_races = self.errors = 0
        self.refusal = ""
        self.failures: list[str] = []
        self.first_written = self.last_written = 0.0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _write(self) -> str | None:
        """One write: None when the server took it, else the server's refusal or error. Raises Unavailable."""
        raise NotImplementedError

    def rate(self) -> float:
        """Writes per second from the first acknowledged write to the last (0 before two): a session's
        start (a process, a connection) is no part of it."""
        span = self.last_written - self.first_written
        return (self.done - 1) / span if self.done > 1 and span > 0 else 0.0

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self.stopping.is_set():
            try:
                outcome = self._write()
            except Unavailable:
                self.errors += 1
                self.stopping.wait(0.5)
                next_at = time.monotonic()
                continue
            now = time.monotonic()
            if outcome is None:
                self.done, self.last_written = self.done + 1, now
                self.first_written = self.first_written or now
            elif FENCE_REFUSAL in outcome:
                self.refused, self.refusal = self.refused + 1, outcome
            elif LOST_RACE in outcome:
                self.lost_races += 1
            else:
                self.failures.append(outcome)
            next_at = max(next_at + self.period, now - self.period)
            self.stopping.wait(max(0.0, next_at - now))


class Writers:
    """Writers side by side (each its own thread): started together, stopped together, summed."""

    def __init__(self, *writers: PacedWriter) -> None:
        self.all = writers

    def start(self) -> None:
        for writer in self.all:
            writer.thread.start()

    def stop(self) -> None:
        """Stops them all and waits for their threads. Idempotent."""
        for writer in self.all:
            writer.stopping.set()
        for writer in self.all:
            if writer.thread.is_alive():
                writer.thread.join()

    def done(self) -> int:
        return sum(w.done for w in self.all)

    def refused(self) -> int:
        return sum(w.refused for w in self.all)

    def errors(self) -> int:
        """Writes that met the server away (restarting)."""
        return sum(w.errors for w in self.all)

    def lost_races(self) -> int:
        return sum(w.lost_races for w in self.all)

    def failures(self) -> list[str]:
        return [f for w in self.all for f in w.failures]

    def rate(self) -> float:
        """Their combined achieved rate (writes per second while each wrote)."""
        return sum(w.rate() for w in self.all)

    def wait_for(self, writes: int, timeout_s: float) -> bool:
        """Blocks until they made ``writes`` writes together (True), a writer failed, or the timeout."""
        deadline = time.monotonic() + timeout_s
        while self.done() < writes and not self.failures():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return self.done() >= writes
