"""The source daemon: snapshot once, then stream the changelog to Kafka in transactions, exactly once.

Loop (one thread; ``run`` blocks until stopped):

1. Check the store (capture installed, no drift) and connect to Kafka: create topics, init the
   transactional producer (fencing any previous instance), read the committed source position.
2. No position: snapshot. One SQLite read transaction at head W; rows in chunks, one Kafka
   transaction per chunk carrying the chunk's ``op=r`` events and the position ``{seq: W,
   snapshot: cursor}``. A restart mid-snapshot resumes from the cursor in a NEW read transaction at
   W2 >= W (those rows carry W2), and the stream still starts after W: nothing between W and W2 is
   missed, and a sink keeps the newest seq per key. After the final chunk: delete changelog <= W.
3. Stream: changelog rows after the committed seq, ``batch_rows`` per transaction, each transaction
   = events (+ a tombstone after each ``d``) + heartbeats (when it drained the backlog, at most one
   per ``heartbeat_min_gap_s``; every ``heartbeat_interval_s`` while idle) + the position. Rows are
   deleted from the changelog only after their transaction committed, with a short busy timeout.
4. Any Kafka error: abort, drop the producer, back off (capped exponential), reconnect, re-read the
   committed position, resume after it (the changelog still holds every unpublished row). The store
   is only read meanwhile, so the writer never waits for Kafka.

Raises SourceError for what a retry cannot fix (not installed, drift, fenced by another instance).

Units: ``cadence`` (heartbeat policy, backoff, two-signal stop; time from an injected Clock),
``outbox`` (the messages of a transaction), ``clients`` (how Kafka is reached, injected for tests).
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from typing import Any, Final

from replicator.clock import SYSTEM_CLOCK, Clock
from replicator.errors import Retryable
from replicator.events.registry import Reframer, SchemaRegistryClient
from replicator.source.cadence import Backoff, HeartbeatPolicy, SourceAborted, StopSignal
from replicator.source.clients import SourceClients
from replicator.source.coalesce import is_gone
from replicator.source.convert import ChangelogRow, Message
from replicator.source.kafka import SourcePosition, TransactionalPublisher, transactional_id
from replicator.source.metrics import MetricsServer, SourceMetrics
from replicator.source.outbox import Outbox, event, warn
from replicator.source.parking import SNAPSHOT_PARK_TIMEOUT_MS, StoreBusy
from replicator.source.settings import SourceSettings
from replicator.source.snapshot import SnapshotCursor, SnapshotMeter, read_chunk
from replicator.source.store import SourceError, StoreIdentity, StoreReader
from replicator.store.schema import TABLES
from replicator.transport.kafka import TransportError

_UNREACHABLE_LOG_EVERY_S: Final = 10.0


__all__ = ["SourceAborted", "SourceDaemon", "event"]


class SourceDaemon:
    """Not thread-safe, except ``request_stop`` (any thread or a signal handler). ``clock`` and
    ``clients`` (how it reaches Kafka) default to the real ones."""

    def __init__(
        self,
        settings: SourceSettings,
        *,
        progress: bool | None = None,
        clock: Clock = SYSTEM_CLOCK,
        clients: SourceClients | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = SourceMetrics()
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._clock = clock
        self.clients = clients or SourceClients()
        self._stop = StopSignal(clock)
        self.heartbeat = HeartbeatPolicy(
            settings.heartbeat_interval_s, settings.heartbeat_min_gap_s, clock, settings.heartbeat_quiet_gap_s
        )
        self.reader: StoreReader | None = None
        self.identity: StoreIdentity | None = None
        self.publisher: TransactionalPublisher | None = None
        self.partitions: dict[str, int] = {}
        self.committed_seq = 0
        #: First read seq of the snapshot the stream follows (heartbeat header ``replicator.snapshot``);
        #: None when the committed position was written by a version that did not record it.
        self.snapshot_seq: int | None = None
        self.snapshot: SnapshotCursor | None = None
        self.deleted_up_to = 0
        self.more_pending = True
        self.last_iteration = clock.monotonic()
        self.kafka_ok = False
        self.server: MetricsServer | None = None
        self.meter = SnapshotMeter(self.metrics, bar=self.progress)

    # -- control ----------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """First call: drain (publish what is pending, commit) and return from ``run``. Second: abort."""
        self._stop.request()

    @property
    def heartbeat_seq(self) -> int:
        """The seq of the last committed heartbeat (-1: none yet)."""
        return self.heartbeat.seq

    def healthy(self) -> bool:
        recent = self._clock.monotonic() - self.last_iteration < max(5.0, 3 * self.settings.heartbeat_interval_s)
        return recent and self.kafka_ok

    def _now_ms(self) -> int:
        return int(self._clock.time() * 1000)

    # -- main loop --------------------------------------------------------------------------------
    def run(self) -> None:
        """Blocks until a stop request drained. Raises SourceError / SourceAborted."""
        s = self.settings
        self.reader = StoreReader(s.db)
        try:
            self.identity = self.reader.check()
            if s.metrics_port is not None:
                self.server = MetricsServer(self.metrics, s.metrics_port, self.healthy, s.metrics_host)
                event(logging.INFO, "metrics_listening", host=s.metrics_host, port=self.server.port)
            event(
                logging.INFO,
                "source_starting",
                db=s.db,
                store_id=self.identity.store_id,
                prefix=s.topic_prefix,
                bootstrap=s.bootstrap_servers,
            )
            self._loop()
        except SourceAborted:
            event(logging.WARNING, "source_aborted", committed_seq=self.committed_seq)
            if self.publisher is not None:
                self.publisher.abort()
            raise
        finally:
            self.meter.close()
            if self.publisher is not None:
                self.publisher.close()
                self.publisher = None
            if self.reader is not None:
                self.reader.end_snapshot()
                self.reader.close()
            if self.server is not None:
                self.server.close()

    def _loop(self) -> None:
        backoff = Backoff(self.settings.retry_max_s)
        failures = stop_failures = 0
        last_unreachable_log = 0.0
        while True:
            self.last_iteration = self._clock.monotonic()
            try:
                if self.publisher is None:
                    self._connect()
                    backoff.reset()
                    failures = 0
                if self.snapshot is not None:
                    if self._stop.is_set():
                        return  # every committed chunk is recorded; a restart resumes after it
                    self._snapshot_step()
                    continue
                stopping = self._stop.is_set()  # drained means: a read that began after the stop found nothing
                drained = self._stream_step()
                if drained and stopping:
                    self._final_heartbeat()
                    event(logging.INFO, "source_stopped", committed_seq=self.committed_seq)
                    return
            except Retryable as exc:
                failures += 1
                self.kafka_ok = isinstance(exc, StoreBusy)  # the store was busy, Kafka answered
                self.metrics.txn_failures.inc()
                self._drop_publisher()
                now = self._clock.monotonic()
                if now - last_unreachable_log >= _UNREACHABLE_LOG_EVERY_S:
                    event(
                        logging.WARNING,
                        "kafka_unavailable" if isinstance(exc, TransportError) else "store_busy",
                        failures=failures,
                        committed_seq=self.committed_seq,
                        error=exc.message.replace("\n", " "),
                    )
                    last_unreachable_log = now
                stop_failures += self._stop.is_set()
                if stop_failures >= 2:
                    # Stopping while Kafka stays away: what is unpublished waits in the changelog.
                    event(logging.WARNING, "source_stopped_undrained", committed_seq=self.committed_seq)
                    return
                self._stop.wait(backoff.next())

    def _drop_publisher(self) -> None:
        if self.publisher is not None:
            self.publisher.abort()
            self.publisher.close()
            self.publisher = None
        if self.reader is not None:
            self.reader.end_snapshot()
        if self.snapshot is not None:
            self.snapshot.read_seq = None
        self.more_pending = True

    def _connect(self) -> None:
        assert self.reader is not None and self.identity is not None
        s = self.settings
        kafka = s.kafka()
        self.partitions = self.clients.ensure_topics(kafka, s.topic_prefix, s.partitions)
        reframe = None if s.schema_registry is None else Reframer(SchemaRegistryClient(s.schema_registry))
        self.publisher = self.clients.publisher(
            kafka, transactional_id(s.topic_prefix, self.identity.store_id), s.transaction_timeout_s, reframe
        )
        position = self.clients.read_position(kafka, s.topic_prefix, self.identity.store_id)
        self.kafka_ok = True
        self._resume(position)

    def _resume(self, position: SourcePosition | None) -> None:
        assert self.reader is not None and self.identity is not None
        head = self.reader.head_seq()
        if position is not None and position.seq < self.identity.capture_from:
            # Capture was uninstalled and installed again after this position: what the writer did in
            # between is in no changelog row. A new snapshot (stamped above every older seq) carries
            # it, and the sinks remove what it lacks (deleted meanwhile) once their watermark reaches it.
            event(
                logging.WARNING,
                "capture_gap",
                committed_seq=position.seq,
                capture_from=self.identity.capture_from,
                action="snapshot again",
            )
            position = None
        if position is None:
            self.snapshot = SnapshotCursor(first_seq=-1, read_seq=None, table_index=0, after_id=None)
            event(logging.INFO, "snapshot_starting", head_seq=head)
            return
        if position.seq > head:
            raise SourceError(
                f"the positions topic says seq {position.seq} was published, but the store's changelog head "
                f"is {head}: the store was restored or capture reinstalled under the same store id",
                hint="use a new --topic-prefix (a fresh snapshot), or restore the store that matches the topics",
            )
        self.committed_seq = position.seq
        self.snapshot_seq = position.snapshot_seq
        self.metrics.last_seq.set(position.seq)
        # Changes parked after the committed position were never passed: they are decided again.
        self.reader.unpark_uncommitted(position.seq, SNAPSHOT_PARK_TIMEOUT_MS)
        self.metrics.parked_rows.set(self.reader.parked_count())
        if position.snapshot is not None:
            cursor = position.snapshot
            index = TABLES.index(cursor["table"]) if cursor.get("table") else len(TABLES)
            after = cursor.get("after")
            self.snapshot = SnapshotCursor(position.seq, None, index, None if after is None else int(after))
            event(
                logging.INFO,
                "snapshot_resuming",
                first_seq=position.seq,
                table=cursor.get("table"),
                after=cursor.get("after"),
            )
        else:
            self.snapshot = None
            self._delete_published(position.seq)
            event(logging.INFO, "stream_resuming", after_seq=position.seq, head_seq=head)
        self.more_pending = True

    # -- snapshot ---------------------------------------------------------------------------------
    def _snapshot_step(self) -> None:
        assert self.reader is not None and self.identity is not None and self.publisher is not None
        snap = self.snapshot
        assert snap is not None
        s = self.settings
        if snap.read_seq is None:
            snap.read_seq = self.reader.begin_snapshot()
            snap.first_seq = snap.read_seq if snap.first_seq < 0 else snap.first_seq
            self.snapshot_seq = snap.first_seq  # on every heartbeat and position from now on
            self.meter.opened(self.reader, snap)
            event(logging.INFO, "snapshot_read_opened", read_seq=snap.read_seq, first_seq=snap.first_seq)
        rows = read_chunk(self.reader, self.identity.columns, snap, s.snapshot_chunk_rows, s.max_message_bytes)
        done, ts = snap.done, self._now_ms()
        messages, published = self._outbox().snapshot_chunk(rows, snap.read_seq, done, ts)
        if done:  # the stream's watermark starts at the first W: everything <= W is in the snapshot
            messages.extend(self._heartbeats(snap.first_seq, ts))
        self.publisher.publish(messages, self._position(snap.first_seq, None if done else snap.cursor()))
        self.metrics.transactions.inc()
        self.meter.published(len(rows), done=done)
        for table, count in Counter(published).items():
            self.metrics.events.labels(table, "r").inc(count)
        if done:
            self.reader.end_snapshot()
            self.committed_seq = snap.first_seq
            self.metrics.last_seq.set(snap.first_seq)
            self._heartbeat_committed(snap.first_seq)
            self.snapshot = None
            event(logging.INFO, "snapshot_done", first_seq=snap.first_seq, last_read_seq=snap.read_seq)
            self._delete_published(snap.first_seq)

    # -- stream -----------------------------------------------------------------------------------
    def _stream_step(self) -> bool:
        """One poll. Returns True when the backlog is drained (nothing left to publish)."""
        assert self.reader is not None and self.publisher is not None
        s = self.settings
        self.reader.check_drift()
        changed = self.reader.changed()
        rows: list[ChangelogRow] = []
        complete = True
        seen_ms = self._now_ms()
        heartbeat_due = self.heartbeat.due(self.committed_seq)
        # data_version only saves reads; before a heartbeat (a promise about the store) and when
        # draining for a stop, the changelog itself is read.
        if changed or self.more_pending or heartbeat_due or self._stop.is_set():
            page = self.reader.page_after(self.committed_seq, s.batch_rows, s.max_message_bytes)
            rows, complete = page.rows, page.complete
            self.metrics.head_seq.set(self.reader.head_seq())
        self.metrics.heartbeat_age.set(self.heartbeat.age())
        if rows:
            drained = complete
            covered = self._publish_rows(
                rows, heartbeat=drained and self.heartbeat.with_drained_batch(), seen_ms=seen_ms
            )
            drained = drained and covered == len(rows)
            self.more_pending = not drained
            if drained or covered == 0:  # covered 0: a row waits to be parked (the write lock is held)
                self._stop.wait(s.poll_min_s)
            return drained
        self.more_pending = False
        if heartbeat_due:
            self.publisher.publish(
                self._heartbeats(self.committed_seq, seen_ms), self._position(self.committed_seq, None)
            )
            self.metrics.transactions.inc()
            self._heartbeat_committed(self.committed_seq)
        if self.deleted_up_to < self.committed_seq:
            self._delete_published(self.committed_seq)
        self.metrics.backlog.set(0)
        if not self._stop.is_set():
            self._stop.wait(self.heartbeat.idle_wait(s.poll_min_s, s.poll_max_s))
        return True

    def _publish_rows(self, rows: list[ChangelogRow], *, heartbeat: bool, seen_ms: int) -> int:
        """Publish (or park) a prefix of ``rows`` in one transaction; returns how many it covered."""
        assert self.identity is not None and self.publisher is not None and self.reader is not None
        taken = self._outbox().changes(rows, self._now_ms())
        if not taken.rows:
            return 0
        warn(taken.warnings)
        messages = taken.messages
        last = taken.rows[-1].seq
        if heartbeat:
            messages.extend(self._heartbeats(last, seen_ms))
        self.publisher.publish(messages, self._position(last, None))
        self.committed_seq = last
        self.metrics.transactions.inc()
        self.metrics.last_seq.set(last)
        # One increment per (table, op), not per row: a labelled increment costs as much as a row's key.
        published = Counter((row.table, row.op) for row in taken.rows if not is_gone(row))  # gone: its delete follows
        for (table, op), count in published.items():
            self.metrics.events.labels(table, op).inc(count)
        if heartbeat:
            self._heartbeat_committed(last)
        self.metrics.backlog.set(max(0, self.reader.head_seq() - last))
        self._delete_published(last)
        return len(taken.rows)

    def _outbox(self) -> Outbox:
        assert self.reader is not None and self.identity is not None
        return Outbox(self.settings, self.identity, self.reader, self.metrics)

    def _heartbeats(self, seq: int, seen_ms: int) -> list[Message]:
        return self._outbox().heartbeats(seq, seen_ms, self.partitions, self.snapshot_seq)

    def _final_heartbeat(self) -> None:
        """On a drained stop: a heartbeat at the last seq, so the sinks' watermark reaches it."""
        assert self.publisher is not None
        if self.heartbeat_seq < self.committed_seq:
            seq = self.committed_seq
            self.publisher.publish(self._heartbeats(seq, self._now_ms()), self._position(seq, None))
            self._heartbeat_committed(seq)

    def _heartbeat_committed(self, seq: int) -> None:
        self.heartbeat.committed(seq)
        self.metrics.heartbeat_ts.set(self._clock.time())
        self.metrics.heartbeat_age.set(0)
        if self.reader is not None:  # `source retry-parked` (another process) lowers it
            self.metrics.parked_rows.set(self.reader.parked_count())

    def _position(self, seq: int, cursor: dict[str, Any] | None) -> tuple[str, bytes, bytes]:
        return self._outbox().position(seq, cursor, self._now_ms(), self.snapshot_seq)

    def _delete_published(self, up_to: int) -> None:
        assert self.reader is not None
        if up_to <= self.deleted_up_to:
            return
        if self.reader.delete_published(up_to, self.settings.delete_busy_timeout_ms):
            self.deleted_up_to = up_to
        else:
            self.metrics.deletes_skipped.inc()
