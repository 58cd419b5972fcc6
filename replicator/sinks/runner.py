"""The sink runner: consume change topics, batch, apply to a destination, then commit. Shared by every
sink (Neo4j, Qdrant); a destination only implements the protocol below.

Destination protocol (design §7)::

    class Destination(Protocol):
        name: str                                      # the sink's name (its stored position's key)
        def start(self) -> SinkPosition | None: ...    # create schema; return the stored position
        def read_position(self) -> SinkPosition | None: ...  # the stored position, read now
        def apply(self, batch: Batch) -> None: ...     # idempotent; writes the batch AND its position
        def close(self) -> None: ...

``apply`` raises DestinationUnavailable (retried with capped backoff, partitions paused, nothing
committed or dropped) or PoisonEvent(index, reason) / any other exception (the batch is split until
only the offender fails; it goes to ``<prefix>.dlq`` and its offset still advances).

Guarantees and decisions:

* ``isolation.level=read_committed``, no auto-commit. Kafka offsets are committed only after
  ``apply`` returned; they mirror the destination's position for lag tools. The destination is the
  source of truth: on every partition assignment the runner seeks to the destination's stored offsets
  (the beginning if it has none). If the destination cannot be read at that moment, the runner starts
  from Kafka's committed offsets, which are never ahead of the destination's (harmless re-reads).
* Batches: per-partition buffers flushed together when they hold ``batch_max_events`` or the oldest
  event is ``batch_max_age_ms`` old. Events keep offset order per partition, hence per key.
* Rebalance: on revoke, in-memory work of the revoked partitions is DROPPED, not flushed, so a revoke
  never blocks on a slow destination; the new owner re-reads from the destination's stored offsets,
  which ``apply`` made atomic with the data. A batch being retried loses its revoked partitions' events
  too, so two instances never both apply them.
* Shutdown: ``request_stop`` (first SIGTERM/SIGINT) flushes and commits what is buffered, then returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from replicator.errors import SchemaError
from replicator.events import headers
from replicator.events.avro import decode_any, decode_key
from replicator.events.registry import RegistryDecoder, RegistryError, SchemaRegistryClient
from replicator.position import PartitionKey, SinkPosition
from replicator.sinks.batch import Batch, Event
from replicator.sinks.dlq import DeadLetters
from replicator.sinks.errors import DestinationUnavailable, PoisonEvent
from replicator.sinks.metrics import MetricsServer, SinkMetrics
from replicator.sinks.runner_settings import SinkRunnerSettings
from replicator.transport.kafka import TransportError, create_topic

log = logging.getLogger("replicator.sink")


class Destination(Protocol):
    name: str

    def start(self) -> SinkPosition | None: ...

    def read_position(self) -> SinkPosition | None: ...

    def apply(self, batch: Batch) -> None: ...

    def close(self) -> None: ...


def _skipped(event: Event) -> Event:
    """The event as a destination must see it once dead-lettered: no record (like a tombstone), so
    nothing is applied but its offset is still covered by the batch's position."""
    return Event(event.topic, event.partition, event.offset, event.key, None, None, event.raw_key, event.raw_value)


class _MissingTopic(TransportError):
    """A change topic does not exist (yet)."""


class SinkRunner:
    """Drives one destination. Not thread-safe: ``run`` on one thread; ``request_stop`` from a signal
    handler or another thread."""

    def __init__(
        self, settings: SinkRunnerSettings, destination: Destination, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.destination = destination
        #: The sink's name is the destination's (its stored position's key, the DLQ's dlq.sink).
        self.sink = destination.name
        self.metrics = SinkMetrics(destination.name)
        self._clock = clock
        self._stop = False
        self._consumer: Consumer | None = None
        self._dlq: DeadLetters | None = None
        self._buffers: dict[PartitionKey, list[Event]] = {}
        self._oldest: float | None = None
        self._undecodable: dict[tuple[str, int, int], str] = {}
        self._assigned: set[PartitionKey] = set()
        self._paused = False
        self._partitions: dict[str, int] = {}
        self._position: SinkPosition | None = None
        self.metrics_port: int | None = None
        self._lag_observed = 0.0
        self._registry = (
            None
            if settings.schema_registry is None
            else RegistryDecoder(SchemaRegistryClient(settings.schema_registry))
        )

    # --- lifecycle

    def request_stop(self) -> None:
        """Ask ``run`` to flush, commit and return. Safe from a signal handler."""
        self._stop = True

    def run(self) -> None:
        """Consume until ``request_stop``. Blocks. Raises TransportError when Kafka is unreachable at
        start; a destination that is down at start is waited for (with backoff)."""
        server = None
        if self.settings.metrics_port is not None:
            server = MetricsServer(self.metrics, self.settings.metrics_port)
            self.metrics_port = server.port
            log.info("metrics listening", extra={"port": server.port})
        try:
            self._position = self._retrying(self.destination.start, "start")
            self.metrics.observe_position(self._position)
            self._describe()
            create_topic(self.settings.kafka, self.settings.dlq_topic)
            self._dlq = DeadLetters(self.settings.kafka, self.settings.dlq_topic, self.sink)
            consumer = Consumer(self.settings.consumer())
            self._consumer = consumer
            self._partitions = self._wait_for_topics(consumer)
            if self._stop:
                return
            consumer.subscribe(
                self.settings.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
            log.info("sink started", extra={"sink": self.sink, "topics": self.settings.topics})
            while not self._stop:
                self._poll(0.1)
                if self._due():
                    self._flush()
                self._observe_lag()
            self._flush()
            log.info("sink stopped cleanly", extra={"sink": self.sink})
        finally:
            if self._consumer is not None:
                self._consumer.close()
            if self._dlq is not None:
                self._dlq.close()
            self.destination.close()
            if server is not None:
                server.close()

    def _wait_for_topics(self, consumer: Consumer) -> dict[str, int]:
        """Partition counts of the change topics, waiting (capped backoff, one log line per wait)
        while the source has not created them yet: a sink may start before its source, as a Kafka
        Connect sink may. Returns early (possibly empty) on request_stop. Raises TransportError
        when Kafka itself is unreachable."""
        delay = self.settings.backoff_initial_s
        logged = False
        while True:
            try:
                return self._partition_counts(consumer)
            except _MissingTopic as exc:
                if not logged:
                    log.warning("waiting for the change topics", extra={"error": str(exc).splitlines()[0]})
                    logged = True
            deadline = self._clock() + delay
            while self._clock() < deadline:
                if self._stop:
                    return {}
                time.sleep(0.05)
            delay = min(delay * 2, self.settings.backoff_max_s)

    def _partition_counts(self, consumer: Consumer) -> dict[str, int]:
        meta = consumer.list_topics(timeout=self.settings.kafka.timeout_s)
        counts = {}
        for topic in self.settings.topics:
            found = meta.topics.get(topic)
            if found is None or found.error is not None:
                raise _MissingTopic(
                    f"topic {topic} does not exist on {self.settings.kafka.bootstrap_servers}",
                    hint="start the source first (it creates the topics) or check --topic-prefix",
                )
            counts[topic] = len(found.partitions)
        return counts

    # --- consuming

    def _poll(self, timeout: float) -> None:
        assert self._consumer is not None
        for msg in self._consumer.consume(num_messages=self.settings.batch_max_events, timeout=timeout):
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"error": str(err)})
                continue
            event = self._decode(msg)
            if event.where not in self._assigned:
                continue  # a message fetched before a revoke: the new owner reads it
            self._buffers.setdefault(event.where, []).append(event)
            if self._oldest is None:
                self._oldest = self._clock()

    def _decode_value(self, raw: bytes) -> tuple[str, dict[str, Any]]:
        """Single-object encoding, or Confluent framing (magic byte 0) through the Schema Registry.
        Raises SchemaError/RegistryError: the message goes to the dead-letter topic."""
        if raw[:1] == b"\x00":
            if self._registry is None:
                raise SchemaError(
                    "the message is Confluent-framed (a Schema Registry id) but this sink has no --schema-registry",
                    hint="run the sink with the registry the source uses, then replay the dead-lettered messages",
                )
            delay = self.settings.backoff_initial_s
            deadline = self._clock() + 60.0
            while True:  # the registry is a server: unreachable is transient, not a poison event
                try:
                    return self._registry.decode(raw)
                except RegistryError as exc:
                    if self._clock() > deadline or self._stop:
                        raise
                    log.warning("schema registry unavailable; retrying", extra={"error": str(exc).splitlines()[0]})
                    time.sleep(delay)
                    delay = min(delay * 2, self.settings.backoff_max_s)
        return decode_any(raw)

    def _decode(self, msg: Message) -> Event:
        topic, partition, offset = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
        raw_key, raw_value = msg.key(), msg.value()
        hdrs = headers.parse(msg.headers())
        try:
            key = None if raw_key is None else decode_key(raw_key)
            if raw_value is None:  # a tombstone: a delete of its key at the header's seq
                return Event(topic, partition, offset, key, None, None, raw_key, raw_value, hdrs)
            schema, record = self._decode_value(raw_value)
        except SchemaError as exc:
            self._undecodable[(topic, partition, offset)] = f"undecodable: {exc.message}"
            return Event(topic, partition, offset, None, None, None, raw_key, raw_value)
        return Event(topic, partition, offset, key, schema, record, raw_key, raw_value, hdrs)

    def _due(self) -> bool:
        if self._oldest is None:
            return False
        held = sum(len(b) for b in self._buffers.values())
        return held >= self.settings.batch_max_events or (
            (self._clock() - self._oldest) * 1000 >= self.settings.batch_max_age_ms
        )

    # --- applying

    def _flush(self) -> None:
        events = [e for key in sorted(self._buffers) for e in self._buffers[key]]
        self._buffers.clear()
        self._oldest = None
        if not events:
            return
        batch = Batch(events, dict(self._partitions))
        started = time.perf_counter()
        applied = self._apply_until_done(batch)
        if applied is None:
            return
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.applied.inc(len(applied.changes()))
        position = applied.position(self.sink, int(time.time() * 1000))
        self._position = position if self._position is None else self._position.merged(position)
        self._describe()  # before the position: a reader that sees the position sees counts as new
        self.metrics.observe_position(self._position)
        self._commit(position)

    def _observe_lag(self) -> None:
        """Per-partition lag for /metrics, at most once a second: the log end the consumer last saw
        (cached by librdkafka on every fetch, no broker round trip) minus this sink's next offset."""
        now = self._clock()
        if self._consumer is None or now - self._lag_observed < 1.0:
            return
        self._lag_observed = now
        lags: dict[tuple[str, int], int] = {}
        for key in self._assigned:
            try:
                _low, high = self._consumer.get_watermark_offsets(TopicPartition(key.topic, key.partition), cached=True)
            except Exception:  # not fetched yet: nothing to say
                continue
            if high is None or high < 0:
                continue
            position = self._position.offsets.get(key, 0) if self._position else 0
            lags[(key.topic, key.partition)] = max(0, int(high) - position)
        self.metrics.observe_group_lag(self.settings.group, lags)

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
        """Apply, retrying while the destination is unavailable. Returns what was applied (events of
        partitions revoked meanwhile are dropped), None if nothing was left."""
        delay = self.settings.backoff_initial_s
        while True:
            batch = Batch([e for e in batch.events if e.where in self._assigned], batch.partitions)
            if not batch.events:
                return None
            try:
                self._isolate(batch)
            except (DestinationUnavailable, TransportError) as exc:
                self.metrics.retries.inc()
                self.metrics.healthy = False
                first_line = str(exc).splitlines()[0]
                log.warning("destination unavailable; retrying", extra={"error": first_line, "in_s": delay})
                self._wait_paused(delay)
                delay = min(delay * 2, self.settings.backoff_max_s)
                continue
            self._resume()
            self.metrics.healthy = True
            return batch

    def _wait_paused(self, seconds: float) -> None:
        """Pause every assigned partition and keep polling (group membership stays alive)."""
        assert self._consumer is not None
        if not self._paused:
            self._consumer.pause([TopicPartition(k.topic, k.partition) for k in self._assigned])
            self._paused = True
        deadline = self._clock() + seconds
        while self._clock() < deadline:
            self._poll(min(0.1, max(0.0, deadline - self._clock())))

    def _resume(self) -> None:
        if self._paused and self._consumer is not None:
            self._consumer.resume([TopicPartition(k.topic, k.partition) for k in self._assigned])
        self._paused = False

    def _isolate(self, batch: Batch) -> None:
        """Apply ``batch``; on a poison event or any non-availability error, split until the offender
        is alone, dead-letter it and apply the rest. Raises DestinationUnavailable/TransportError."""
        dead = [e for e in batch.events if (e.topic, e.partition, e.offset) in self._undecodable]
        for event in dead:
            self._dead_letter(event, self._undecodable.pop((event.topic, event.partition, event.offset)))
        try:
            self.destination.apply(batch)
        except DestinationUnavailable:
            raise
        except PoisonEvent as exc:
            if exc.index is not None and 0 <= exc.index < len(batch.events):
                events = list(batch.events)
                if exc.index:
                    self._isolate(Batch(events[: exc.index], batch.partitions))
                self._dead_letter(events[exc.index], exc.reason)
                self._isolate(Batch([_skipped(events[exc.index]), *events[exc.index + 1 :]], batch.partitions))
                return
            failure: Exception = exc
        except Exception as exc:
            failure = exc
        else:
            return
        if len(batch.events) == 1:
            self._dead_letter(batch.events[0], f"{type(failure).__name__}: {failure}")
            self._isolate(Batch([_skipped(batch.events[0])], batch.partitions))
            return
        left, right = batch.split()
        self._isolate(left)
        self._isolate(right)

    def _dead_letter(self, event: Event, reason: str) -> None:
        assert self._dlq is not None
        self._dlq.send(event, reason)
        self.metrics.dead_letters.inc()
        log.warning(
            "dead-lettered",
            extra={"topic": event.topic, "partition": event.partition, "offset": event.offset, "reason": reason},
        )

    def _commit(self, position: SinkPosition) -> None:
        assert self._consumer is not None
        offsets = [
            TopicPartition(k.topic, k.partition, off) for k, off in position.offsets.items() if k in self._assigned
        ]
        if offsets:
            try:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            except Exception as exc:  # the mirror may lag; the destination holds the truth
                log.warning("offset commit failed", extra={"error": str(exc)})

    def _retrying(self, call: Callable[[], SinkPosition | None], what: str) -> SinkPosition | None:
        delay = self.settings.backoff_initial_s
        while True:
            try:
                return call()
            except DestinationUnavailable as exc:
                if self._stop:
                    raise
                self.metrics.retries.inc()
                log.warning(f"destination unavailable at {what}; retrying", extra={"error": str(exc).splitlines()[0]})
                time.sleep(delay)
                delay = min(delay * 2, self.settings.backoff_max_s)

    # --- rebalance callbacks (run inside consume/poll on this thread)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            stored = self.destination.read_position()
        except DestinationUnavailable:
            stored = None
            use_committed = True
        else:
            use_committed = False
        for tp in partitions:
            key = PartitionKey(tp.topic, tp.partition)
            if not use_committed:
                tp.offset = stored.offsets.get(key, OFFSET_BEGINNING) if stored is not None else OFFSET_BEGINNING
            self._assigned.add(key)
        if stored is not None:
            self._position = stored if self._position is None else self._position.merged(stored)
        consumer.assign(partitions)
        if self._paused:
            consumer.pause(partitions)
        log.info(
            "partitions assigned",
            extra={"partitions": [f"{tp.topic}/{tp.partition}@{tp.offset}" for tp in partitions]},
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = PartitionKey(tp.topic, tp.partition)
            self._assigned.discard(key)
            self._buffers.pop(key, None)
        if not self._buffers:
            self._oldest = None
        log.info("partitions revoked", extra={"partitions": [f"{tp.topic}/{tp.partition}" for tp in partitions]})
