"""The sink runner: consume change topics, batch, apply to a destination, then commit. Shared by every
sink (Neo4j, Qdrant); a destination only implements the protocol below.

Destination protocol (design §7)::

    class Destination(Protocol):
        name: str                                      # the sink's name (its stored position's key)
        def start(self) -> SinkPosition | None: ...    # create schema; return the stored position
        def read_position(self) -> SinkPosition | None: ...  # the stored position, read now
        def apply(self, batch: Batch) -> None: ...     # idempotent; writes the batch AND its position
        def close(self) -> None: ...

Failures come in three kinds (``replicator.errors``, ``replicator.sinks.errors``), and ``start``,
``apply`` and ``read_position`` report each as its own class:

* retryable (DestinationUnavailable, TransportError): the same batch is retried with capped backoff,
  every partition paused (polling goes on, so the group keeps this member), nothing committed;
* fatal (DestinationRefused, ModelError, ... and any exception that is none of the three): the sink
  stops consuming, commits nothing, logs the cause and its fix once, answers 503 on ``/healthz`` with
  them, and re-checks ``start`` every ``recheck_s``. When it succeeds, the batch is dropped and every
  partition re-read from the destination's stored position (a restored or rebuilt destination is read
  again, never guessed). The process does not exit: see docs/sinks.md, "Failures";
* poison (PoisonEvent): only an event proven bad (``replicator.sinks.isolate``) goes to
  ``<prefix>.dlq``; its offset advances with the rest of its batch.

Guarantees and decisions:

* ``isolation.level=read_committed``, no auto-commit. Kafka offsets are committed only after
  ``apply`` returned; they mirror the destination's position for lag tools. The destination is the
  source of truth: on every partition assignment the runner seeks to the destination's stored offsets
  (the beginning if it has none). If the destination cannot be read at that moment, the runner starts
  from Kafka's committed offsets, which are never ahead of the destination's (harmless re-reads).
* Batches: per-partition buffers flushed together when they hold ``batch_max_events``, when the oldest
  event is ``batch_max_age_ms`` old, or at once when every owned partition holds a heartbeat (a
  complete watermark step: the source has published everything up to its seq; this is what ends a
  cutover's drain without waiting out the batch age). Events keep offset order per partition, hence per key.
* Rebalance: on revoke, in-memory work of the revoked partitions is DROPPED, not flushed, so a revoke
  never blocks on a slow destination; the new owner re-reads from the destination's stored offsets,
  which ``apply`` made atomic with the data. A batch being retried loses its revoked partitions' events
  too, so two instances never both apply them.
* Shutdown: ``request_stop`` (first SIGTERM/SIGINT) flushes and commits what is buffered, then returns.

Units: ``Batcher`` (per-partition batches by size and age), ``EventDecoder``, ``apply_isolating`` with
``DeadLetters`` (set poison aside), ``Assignment`` (partitions owned, pause, rewind, commit). The runner
composes them; its Kafka clients (``SinkClients``) and its clock (``replicator.clock``) are injected, so
a unit test drives it on the in-memory broker and a fake clock.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from confluent_kafka import KafkaError, TopicPartition

from replicator.clock import SYSTEM_CLOCK, Clock
from replicator.errors import Kind, kind_of
from replicator.position import SinkPosition
from replicator.sinks.assignment import Assignment
from replicator.sinks.batch import Batch, Event
from replicator.sinks.batcher import Batcher
from replicator.sinks.clients import SinkClients
from replicator.sinks.decode import EventDecoder
from replicator.sinks.dlq import DeadLetters
from replicator.sinks.health import HealthReport
from replicator.sinks.isolate import apply_isolating
from replicator.sinks.metrics import MetricsServer, SinkMetrics
from replicator.sinks.runner_settings import SinkRunnerSettings
from replicator.sinks.topics import wait_for_topics

log = logging.getLogger("replicator.sink")

#: librdkafka's batch consume waits out its whole timeout unless the batch fills (measured: one
#: message, ``consume(1000, 1.0)`` returns after 1.0 s). Short polls bound how late a completed
#: watermark step (design §4) is applied after its last heartbeat arrives: ~20 ms, not ~100.
POLL_S = 0.02


class Destination(Protocol):
    name: str

    def start(self) -> SinkPosition | None: ...

    def read_position(self) -> SinkPosition | None: ...

    def apply(self, batch: Batch) -> None: ...

    def close(self) -> None: ...


class SinkRunner:
    """Drives one destination. Not thread-safe: ``run`` on one thread; ``request_stop`` from a signal
    handler or another thread. ``clients`` and ``clock`` default to the real ones."""

    def __init__(
        self,
        settings: SinkRunnerSettings,
        destination: Destination,
        clock: Clock = SYSTEM_CLOCK,
        clients: SinkClients | None = None,
    ) -> None:
        self.settings = settings
        self.destination = destination
        #: The sink's name is the destination's (its stored position's key, the DLQ's dlq.sink).
        self.sink = destination.name
        self.metrics = SinkMetrics(destination.name)
        self.clients = clients or SinkClients()
        self._clock = clock
        self._stop = False
        self._dlq: DeadLetters | None = None
        self.assignment: Assignment | None = None  # once consuming
        self.batcher = Batcher(settings.batch_max_events, settings.batch_max_age_ms, clock.monotonic)
        self._partitions: dict[str, int] = {}
        self._position: SinkPosition | None = None
        self.metrics_port: int | None = None
        self._lag_observed = 0.0
        self._weak_unconfirmed = False  # a lone change set aside on a position-only proof, none applied since
        self._health = HealthReport(self.sink, self.metrics, clock.monotonic, settings.recheck_s)
        self._decoder = EventDecoder(settings, lambda: self._stop, clock.monotonic)

    # --- lifecycle

    def request_stop(self) -> None:
        """Ask ``run`` to flush, commit and return. Safe from a signal handler."""
        self._stop = True

    def run(self) -> None:
        """Consume until ``request_stop``. Blocks. Raises TransportError when Kafka is unreachable at
        start; a destination that is down (backoff) or refuses the sink (re-checks, /healthz 503) at
        start is waited for, as later on."""
        server = None
        if self.settings.metrics_port is not None:
            export = getattr(self.destination, "export_points", None)  # optional: /points
            server = MetricsServer(self.metrics, self.settings.metrics_port, self.settings.metrics_host, export)
            self.metrics_port = server.port
            log.info("metrics listening", extra={"port": server.port})
        try:
            self._position = self._start()
            if not self._stop:
                self._connect()
            if not self._stop:
                self._consume()
        finally:
            if self.assignment is not None:
                self.assignment.consumer.close()
            if self._dlq is not None:
                self._dlq.close()
            self.destination.close()
            if server is not None:
                server.close()

    def _connect(self) -> None:
        """The dead-letter topic and its producer, the consumer, the change topics' partition counts."""
        self.metrics.observe_position(self._position)
        self._describe()
        self.clients.create_topic(self.settings.kafka, self.settings.dlq_topic)
        self._dlq = DeadLetters(self.settings.kafka, self.settings.dlq_topic, self.sink, self.clients.producer)
        consumer = self.clients.consumer(self.settings.consumer())
        self.assignment = Assignment(consumer, self.settings.topics, self._on_assign, self._on_revoke)
        clock = self._clock
        self._partitions = wait_for_topics(consumer, self.settings, lambda: self._stop, clock.monotonic, clock.sleep)

    def _consume(self) -> None:
        assert self.assignment is not None
        self.assignment.subscribe()
        log.info("sink started", extra={"sink": self.sink, "topics": self.settings.topics})
        while not self._stop:
            self._poll(POLL_S)
            if self.batcher.due(self.assignment.keys):
                self._flush()
            if self._clock.monotonic() - self._lag_observed >= 1.0:  # /metrics lag, at most once a second
                self._lag_observed = self._clock.monotonic()
                self.metrics.observe_consumer_lag(
                    self.assignment.consumer, self.settings.group, self.assignment.keys, self._position
                )
        self._flush()
        log.info("sink stopped cleanly", extra={"sink": self.sink})

    # --- consuming

    def _poll(self, timeout: float) -> None:
        assert self.assignment is not None
        for msg in self.assignment.consumer.consume(num_messages=self.settings.batch_max_events, timeout=timeout):
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"error": str(err)})
                continue
            event = self._decoder.decode(msg)
            if event.where not in self.assignment.keys:
                continue  # a message fetched before a revoke: the new owner reads it
            self.batcher.add(event)

    # --- applying

    def _flush(self) -> None:
        events = self.batcher.drain()
        if not events:
            return
        assert self.assignment is not None
        batch = Batch(events, dict(self._partitions))
        started = time.perf_counter()
        applied = self._apply_until_done(batch)
        if applied is None:
            return
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.applied.inc(len(applied.changes()))
        position = applied.position(self.sink, int(self._clock.time() * 1000))
        self._position = position if self._position is None else self._position.merged(position)
        self._describe()  # before the position: a reader that sees the position sees counts as new
        self.metrics.observe_source(applied.events)
        self.metrics.observe_position(self._position)
        self.assignment.commit(position)

    def _describe(self) -> None:
        """Refresh what the destination reports about itself (optional ``describe() -> dict``)."""
        describe = getattr(self.destination, "describe", None)
        if describe is None:
            return
        try:
            self.metrics.destination_state = dict(describe())
        except Exception as exc:  # an observation; never a reason to stop applying
            log.warning("describe failed", extra={"error": str(exc)})

    def _apply_until_done(self, batch: Batch) -> Batch | None:
        """Apply, dead-lettering only proven poison (``apply_isolating``) and retrying while the
        destination is unavailable. Returns what was applied (events of partitions revoked meanwhile
        are dropped); None if nothing was left, or after a fatal stop (the batch is dropped: the
        partitions were re-sought to the destination's stored position)."""
        delay = self.settings.backoff_initial_s
        while True:
            assert self.assignment is not None
            batch = Batch([e for e in batch.events if e.where in self.assignment.keys], batch.partitions)
            if not batch.events:
                return None
            for event in batch.events:  # undecodable bytes: the content is the proof
                reason = self._decoder.undecodable.pop((event.topic, event.partition, event.offset), None)
                if reason is not None:
                    self._dead_letter(event, reason)
            try:
                outcome = apply_isolating(
                    batch, self.destination.apply, self._dead_letter, allow_weak=not self._weak_unconfirmed
                )
            except Exception as exc:
                if kind_of(exc) is Kind.RETRYABLE:
                    self._unavailable(exc, delay)
                    delay = min(delay * 2, self.settings.backoff_max_s)
                    continue
                self._halt(exc)
                return None
            self._weak_unconfirmed = outcome.weak or (self._weak_unconfirmed and outcome.accepted == 0)
            self._resume()
            self._health.healthy()
            return batch

    def _unavailable(self, exc: BaseException, delay: float) -> None:
        """A retryable failure: report it, then wait ``delay`` with every partition paused."""
        self._health.unavailable(exc, delay)
        self._wait(delay)

    def _halt(self, exc: BaseException) -> bool:
        """Stop consuming on a fatal error and wait (partitions paused, polling on) until ``start``
        succeeds again; then re-read every partition from the stored position. Returns False when a
        stop was requested first. Blocks."""
        self._health.fatal(exc)
        while not self._stop:
            self._wait(self.settings.recheck_s, until_stop=True)
            if self._stop:
                break
            try:
                stored = self.destination.start()
            except Exception as again:
                if kind_of(again) is Kind.RETRYABLE:
                    self._health.unavailable(again, self.settings.recheck_s)
                else:
                    self._health.fatal(again)
                continue
            self._recovered(stored)
            return True
        self.batcher.clear()
        return False

    def _recovered(self, stored: SinkPosition | None) -> None:
        """The destination works again: forget what was read, seek every partition to its stored offset
        (the beginning without one), resume."""
        self._position = stored
        self.metrics.observe_position(stored)
        self.batcher.clear()
        if self.assignment is not None:
            self.assignment.rewind(stored)
        offsets = {} if stored is None else {str(k): v for k, v in stored.offsets.items()}
        log.info("destination back; resuming from its stored position", extra={"sink": self.sink, "offsets": offsets})
        self._health.healthy()

    def _start(self) -> SinkPosition | None:
        """``destination.start()``, waiting out retryable errors (backoff) and fatal ones (re-checks).
        Returns None as soon as a stop is requested."""
        delay = self.settings.backoff_initial_s
        while not self._stop:
            try:
                position = self.destination.start()
            except Exception as exc:
                if kind_of(exc) is Kind.RETRYABLE:
                    self._unavailable(exc, delay)
                    delay = min(delay * 2, self.settings.backoff_max_s)
                    continue
                if not self._halt(exc):
                    return None
                return self._position
            self._health.healthy()
            return position
        return None

    def _wait(self, seconds: float, until_stop: bool = False) -> None:
        """Wait ``seconds``: once consuming, polling with every partition paused (group membership
        stays alive), else sleeping. Before consuming, or with ``until_stop``, returns early on
        request_stop; a batch being retried is waited for (the first stop flushes it)."""
        if self.assignment is not None:
            self.assignment.pause_all()
        clock = self._clock
        deadline = clock.monotonic() + seconds
        while clock.monotonic() < deadline and not (self._stop and (until_stop or self.assignment is None)):
            if self.assignment is not None:
                self._poll(min(0.1, max(0.0, deadline - clock.monotonic())))
            else:
                clock.sleep(min(0.05, max(0.0, deadline - clock.monotonic())))

    def _resume(self) -> None:
        if self.assignment is not None:
            self.assignment.resume_all()

    def _dead_letter(self, event: Event, reason: str) -> None:
        assert self._dlq is not None
        self._dlq.send(event, reason)
        self.metrics.dead_letters.inc()
        log.warning(
            "dead-lettered",
            extra={"topic": event.topic, "partition": event.partition, "offset": event.offset, "reason": reason},
        )

    # --- rebalance callbacks (run inside consume/poll on this thread)

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:  # noqa: ANN401 - a Consumer
        try:
            stored = self.destination.read_position()
        except Exception as exc:  # any kind: Kafka's committed offsets are never ahead of the destination
            log.warning("stored position unreadable; starting from committed offsets", extra={"error": str(exc)})
            stored, use_committed = None, True
        else:
            use_committed = False
        if stored is not None:
            self._position = stored if self._position is None else self._position.merged(stored)
        assert self.assignment is not None
        self.assignment.assigned(partitions, stored, use_committed)

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:  # noqa: ANN401 - a Consumer
        assert self.assignment is not None
        self.batcher.drop(self.assignment.revoked(partitions))
