"""What a sink says about its failures: ``/healthz`` (through SinkMetrics) and the log lines an
operator reads. A retryable outage is logged when it starts and then once a minute; a fatal stop once
per distinct fix, whatever the number of re-checks; the way back once."""

from __future__ import annotations

import logging
from collections.abc import Callable

from replicator.errors import ReplicatorError
from replicator.sinks.metrics import SinkMetrics

log = logging.getLogger("replicator.sink")

#: While a destination stays unavailable, one reminder line per this many seconds (not one per retry).
UNAVAILABLE_LOG_EVERY_S = 60.0


def explain(exc: BaseException) -> tuple[str, str]:
    """The cause and the fix of a failure, for one log line and ``/healthz``."""
    if isinstance(exc, ReplicatorError):
        return exc.message, exc.hint
    return f"{type(exc).__name__}: {exc}", "an unexpected error; the sink re-checks, report it if it lasts"


class HealthReport:
    """Not thread-safe (the runner's thread); ``/healthz`` reads what it publishes in SinkMetrics."""

    def __init__(self, sink: str, metrics: SinkMetrics, clock: Callable[[], float], recheck_s: float) -> None:
        self.sink = sink
        self.metrics = metrics
        self._clock = clock
        self._recheck_s = recheck_s
        self._unavailable_logged: float | None = None  # when the current outage was last logged
        self._fatal_cause: str | None = None  # the fix (else the cause) logged for the current fatal stop

    def unavailable(self, exc: BaseException, retry_in_s: float) -> None:
        """A retryable failure: 503 with the cause; a log line at the start of the outage, then a minute apart."""
        self.metrics.retries.inc()
        cause, hint = explain(exc)
        self.metrics.set_health(False, f"destination unavailable, retrying: {cause}")
        now = self._clock()
        if self._unavailable_logged is None or now - self._unavailable_logged >= UNAVAILABLE_LOG_EVERY_S:
            self._unavailable_logged = now
            log.warning("destination unavailable; retrying", extra={"error": cause, "hint": hint, "in_s": retry_in_s})

    def fatal(self, exc: BaseException) -> None:
        """A fatal failure: 503 with the cause and its fix (as of now); one ERROR line per distinct fix,
        so a server alternating between two faces of one cause (wrong password, then too many failed
        logins) is not logged at every re-check."""
        cause, hint = explain(exc)
        self.metrics.set_health(False, f"{cause}\n  hint: {hint}" if hint else cause, fatal=True)
        if (hint or cause) != self._fatal_cause:
            self._fatal_cause = hint or cause
            log.error(
                "sink stopped: the destination refuses its work; nothing is committed or dead-lettered, "
                "and it resumes by itself once the cause is fixed",
                extra={"sink": self.sink, "error": cause, "hint": hint, "recheck_s": self._recheck_s},
            )

    def healthy(self) -> None:
        """The destination works (again): 200, and one line if it had been reported down."""
        if self._unavailable_logged is not None:
            log.info("destination available again", extra={"sink": self.sink})
        self._unavailable_logged = None
        self._fatal_cause = None
        self.metrics.set_health(True)
