"""``replicator watch``: the guide's post-migration monitor ("Monitoring and Alerting").

The same reads an agent makes (open an entity by name, its neighbours, a semantic search) run in
turn against the old store and the new backend, for a bounded time or until stopped. Per backend
and read: how many, errors, mean and p95 latency, slow answers (over the guide's 100 ms), and on
the new backend how often it did not return what the store returns (after a cutover the runtime
writes only to the new backend, so a difference is information, not an error). Alerts follow the
guide: an error rate over 1 %, or a mean latency over 100 ms, on the new backend.

The control loop is pure over its probes and clock (``watch``); the probes that talk to SQLite,
Neo4j and Qdrant are built in ``probes.py``.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

ERROR_RATE_LINE: Final = 0.01
MEAN_MS_LINE: Final = 100.0
STORE: Final = "store"


def p95(values: Sequence[float]) -> float:
    """The 95th percentile (nearest rank) of a non-empty sequence. Pure."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Sample:
    """One thing to read: an entity's name, and its text's vector for the search (None: no search)."""

    name: str
    vector: Sequence[float] | None = None


#: A read against one backend: a sample in, the ids it found out (raises on failure).
Read = Callable[[Sample], frozenset[int]]


@dataclass(frozen=True)
class Probe:
    backend: str  # "store", "neo4j", "qdrant"
    read: str  # "by_name", "neighbours", "search"
    run: Read


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    differs: int = 0
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        n = len(self.latencies_ms) + self.errors
        lat = sorted(self.latencies_ms)
        return {
            "reads": n,
            "errors": self.errors,
            "error_rate": round(self.errors / n, 4) if n else 0.0,
            "mean_ms": round(statistics.fmean(lat), 2) if lat else None,
            "p95_ms": round(p95(lat), 2) if lat else None,
            "slow": sum(v > MEAN_MS_LINE for v in lat),
            "differs_from_store": self.differs,
            "last_error": self.last_error,
        }


@dataclass
class Report:
    tallies: dict[tuple[str, str], Tally]
    rounds: int
    seconds: float

    def alerts(self) -> list[str]:
        """The guide's thresholds, on the new backend's reads."""
        out = []
        for (backend, read), tally in sorted(self.tallies.items()):
            if backend == STORE:
                continue
            d = tally.to_dict()
            if d["reads"] and d["error_rate"] > ERROR_RATE_LINE:
                out.append(f"{backend} {read}: {d['error_rate']:.1%} of reads failed (line 1 %): {tally.last_error}")
            if d["mean_ms"] is not None and d["mean_ms"] > MEAN_MS_LINE:
                out.append(f"{backend} {read}: mean {d['mean_ms']:.0f} ms (line {MEAN_MS_LINE:.0f} ms)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "seconds": round(self.seconds, 2),
            "reads": [{"backend": b, "read": r, **t.to_dict()} for (b, r), t in sorted(self.tallies.items())],
            "alerts": self.alerts(),
        }


Observer = Callable[[str, str, float | None], None]  # backend, read, seconds (None: an error)


def watch(
    probes: Sequence[Probe], samples: Sequence[Sample], *, duration_s: float, interval_s: float,
    stop: threading.Event | None = None, clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep, observe: Observer | None = None,
) -> Report:  # fmt: skip
    """Run every probe on the next sample, round after round, until ``duration_s`` has passed or
    ``stop`` is set; a round starts at most every ``interval_s``. A probe that raises counts an
    error (its message kept); a new backend's answer unlike the store's counts a difference.
    Blocks for the duration. Never raises for a failing probe."""
    stop = stop or threading.Event()
    tallies = {(p.backend, p.read): Tally() for p in probes}
    started = clock()
    rounds = 0
    while samples and not stop.is_set() and clock() - started < duration_s:
        begun = clock()
        sample = samples[rounds % len(samples)]
        found: dict[str, frozenset[int]] = {}
        for probe in probes:
            tally = tallies[(probe.backend, probe.read)]
            t0 = clock()
            try:
                ids = probe.run(sample)
            except Exception as exc:
                tally.errors += 1
                tally.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
                if observe:
                    observe(probe.backend, probe.read, None)
                continue
            elapsed = clock() - t0
            tally.latencies_ms.append(elapsed * 1000)
            if observe:
                observe(probe.backend, probe.read, elapsed)
            if probe.backend == STORE:
                found[probe.read] = ids
            elif probe.read in found and ids != found[probe.read]:
                tally.differs += 1
        rounds += 1
        sleep(max(0.0, interval_s - (clock() - begun)))
    return Report(tallies, rounds, clock() - started)
