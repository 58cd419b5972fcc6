"""``replicator lag``: how far each sink is behind the source, in events, seq and seconds.

Three vantage points, each read where it is the truth:
* Kafka: per sink group and partition, committed offset vs log end offset (events; transaction
  markers count as offsets too, as in every Kafka lag tool).
* The store: head seq (highest changelog seq) and backlog (changelog rows not yet published); the
  positions topic, read by the source's own reader: the last seq the source committed to Kafka.
* Each sink's destination: its watermark (SinkPosition.watermark), so lag in seq = head - watermark
  and lag in seconds = now - watermark time; heartbeats keep that meaningful while the store idles.
A status per sink, in the spirit of Burrow, is judged from two samples (``assess``, pure).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from replicator.capture.install import read_state
from replicator.capture.storefile import open_store
from replicator.cutover.options import TargetOptions
from replicator.cutover.targets import sinks_for
from replicator.errors import listed
from replicator.position import SinkPosition
from replicator.reverse.process import ReverseLag
from replicator.source.kafka import read_position
from replicator.transport.kafka import retrying
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import positions_topic


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed here
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed if self.committed is not None and self.committed >= 0 else 0)


@dataclass(frozen=True)
class SourceLag:
    head_seq: int
    published_seq: int | None
    backlog: int


@dataclass
class SinkLag:
    sink: str
    group: str
    partitions: list[PartitionLag]
    watermark_seq: int | None
    watermark_ts_ms: int | None
    updated_at_ms: int | None
    lag_seq: int | None = None
    lag_seconds: float | None = None
    status: str = "OK"
    eta_s: float | None = None
    rate_per_s: float | None = None

    @property
    def lag_events(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass
class LagReport:
    at_ms: int
    source: SourceLag
    sinks: list[SinkLag] = field(default_factory=list)
    #: After a cutover to Neo4j: the reverse process (Neo4j's changelog into the store), as a sink
    #: whose one "partition" is the changelog (committed = applied seq, end = head seq).
    reverse: SinkLag | None = None
    #: Changes Neo4j took that the store refused and no later change replaced (reverse/aside.py):
    #: not lag (they will not drain by themselves), but missing from the store; rollback refuses.
    reverse_set_aside: tuple[str, ...] = ()

    def to_json(self) -> str:
        data = asdict(self)
        if self.reverse is not None:
            data["reverse"]["lag_events"] = self.reverse.lag_events
        for sink, raw in zip(self.sinks, data["sinks"], strict=True):
            raw["lag_events"] = sink.lag_events
            for part, raw_part in zip(sink.partitions, raw["partitions"], strict=True):
                raw_part["lag"] = part.lag
        return json.dumps(data, indent=2)

    def table(self) -> str:
        src = self.source
        published = "-" if src.published_seq is None else str(src.published_seq)
        lines = [
            f"source  head seq {src.head_seq}   published seq {published}   changelog backlog {src.backlog}",
            "",
            f"{'sink':<10} {'status':<6} {'events':>7} {'seq lag':>8} {'seconds':>8} {'watermark':>10} "
            f"{'rate/s':>8} {'drain in':>9}",
        ]
        for s in self.sinks + ([self.reverse] if self.reverse is not None else []):
            lines.append(
                f"{s.sink:<10} {s.status:<6} {s.lag_events:>7} {_fmt(s.lag_seq):>8} {_fmt(s.lag_seconds, '.1f'):>8} "
                f"{_fmt(s.watermark_seq):>10} {_fmt(s.rate_per_s, '.0f'):>8} {_fmt(s.eta_s, '.1f', 's'):>9}"
            )
            for p in s.partitions:
                committed = "-" if p.committed is None else str(p.committed)
                lines.append(f"  {p.topic}/{p.partition:<3} committed {committed:>8}  end {p.end:>8}  lag {p.lag}")
        if aside := self.reverse_set_aside:
            lines.append(f"  set aside, not in the store: {len(aside)} ({listed(aside, 3, '; ')})")
        return "\n".join(lines)


def _fmt(value: float | None, spec: str = "", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def kafka_offsets(settings: KafkaSettings, group: str, topics: Sequence[str]) -> list[PartitionLag]:
    """Committed offset and log end offset of every partition of ``topics`` for ``group``. Blocks up
    to about twice the settings' timeout (a broker error that clears by itself, such as a group
    coordinator still loading, is retried meanwhile); a topic that does not exist yet has no
    partitions. Raises TransportError or KafkaRefused."""
    return retrying(settings, f"read the offsets of group {group}", lambda: _offsets(settings, group, topics))


def _offsets(settings: KafkaSettings, group: str, topics: Sequence[str]) -> list[PartitionLag]:
    consumer = Consumer({**settings.consumer(group), "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=settings.timeout_s)
        wanted = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in metadata.topics and metadata.topics[topic].error is None
            for p in sorted(metadata.topics[topic].partitions)
        ]
        if not wanted:
            return []
        committed = {
            (tp.topic, tp.partition): tp.offset for tp in consumer.committed(wanted, timeout=settings.timeout_s)
        }
        result = []
        for tp in wanted:
            _low, high = consumer.get_watermark_offsets(tp, timeout=settings.timeout_s)
            offset = committed.get((tp.topic, tp.partition))
            result.append(
                PartitionLag(tp.topic, tp.partition, offset if offset is not None and offset >= 0 else None, high)
            )
        return result
    finally:
        consumer.close()


def published_seq(settings: KafkaSettings, prefix: str, store_id: str | None) -> int | None:
    """The last seq the source committed to Kafka for ``store_id``, or None (no store id, no positions
    topic yet, or nothing committed). Read by the source's own reader of its positions topic
    (read_committed, to the end): never a seq of an aborted or open transaction. Blocks; raises
    TransportError or KafkaRefused (transient broker errors are retried for a while)."""
    if store_id is None:
        return None
    topic = positions_topic(prefix)

    def read() -> int | None:
        position = read_position(settings, prefix, store_id)
        return None if position is None else position.seq

    return retrying(settings, f"read {topic}", read)


def source_lag(db: Path) -> tuple[SourceLag, str | None]:
    """Head seq and backlog from the store (read-only, never blocks the writer), and its store id."""
    conn = open_store(db, readonly=True)
    try:
        st = read_state(conn)
    finally:
        conn.close()
    return SourceLag(st.head_seq, None, st.backlog), st.store_id


def sink_lag(
    sink: str, group: str, *, partitions: list[PartitionLag], position: SinkPosition | None, head_seq: int, now_ms: int
) -> SinkLag:
    """Combine Kafka offsets and the destination's position into one sink's lag. Pure."""
    watermark = position.watermark() if position else None
    lag = SinkLag(
        sink=sink,
        group=group,
        partitions=partitions,
        watermark_seq=watermark.seq if watermark else None,
        watermark_ts_ms=watermark.ts_ms if watermark else None,
        updated_at_ms=position.updated_at_ms if position else None,
    )
    if watermark is not None:
        lag.lag_seq = max(0, head_seq - watermark.seq)
        lag.lag_seconds = max(0.0, (now_ms - watermark.ts_ms) / 1000)
    return lag


def assess(
    previous: SinkLag | None, current: SinkLag, elapsed_s: float, now_ms: int, stop_after_s: float = 30.0
) -> SinkLag:
    """Status from two samples, Burrow-style. Pure; returns ``current`` updated.

    OK: caught up, or catching up. WARN: lag growing while the sink commits. STALL: lag > 0 and the
    committed offsets did not move between the samples. STOP: lag > 0 and the sink has not written
    its position for ``stop_after_s`` (or never). ETA: events behind / recent commit rate.
    """
    if previous is not None and elapsed_s > 0:
        moved = sum(max(0, (c.committed or 0) - (p.committed or 0)) for c, p in _pairs(previous, current))
        current.rate_per_s = moved / elapsed_s
        if current.rate_per_s > 0 and current.lag_events > 0:
            current.eta_s = current.lag_events / current.rate_per_s
    behind = current.lag_events > 0 or (current.lag_seq or 0) > 0
    silent_s = None if current.updated_at_ms is None else (now_ms - current.updated_at_ms) / 1000
    if not behind:
        current.status, current.eta_s = "OK", 0.0
    elif silent_s is None or silent_s > stop_after_s:
        current.status = "STOP"
    elif previous is not None and not current.rate_per_s:
        current.status = "STALL"
    elif previous is not None and current.lag_events > previous.lag_events:
        current.status = "WARN"
    else:
        current.status = "OK"
    return current


def _pairs(previous: SinkLag, current: SinkLag) -> list[tuple[PartitionLag, PartitionLag]]:
    before = {(p.topic, p.partition): p for p in previous.partitions}
    return [(c, before[(c.topic, c.partition)]) for c in current.partitions if (c.topic, c.partition) in before]


PositionReader = Callable[[], SinkPosition | None]


def reverse_sink_lag(lag: ReverseLag) -> SinkLag:
    """The reverse lag in the sinks' shape, so that ``assess`` gives it the same status rules. Pure."""
    return SinkLag(
        sink="reverse", group="-", partitions=[PartitionLag("neo4j-changelog", 0, lag.applied_seq, lag.head_seq)],
        watermark_seq=lag.applied_seq, watermark_ts_ms=lag.applied_ts_ms or None,
        updated_at_ms=lag.applied_at_ms or None, lag_seq=lag.transactions, lag_seconds=lag.seconds,
    )  # fmt: skip


def _reverse(db: Path, opts: TargetOptions) -> ReverseLag | None:
    """The reverse lag when a cutover to Neo4j is in effect (the reverse process's domain), else None."""
    from replicator.cutover import state  # noqa: PLC0415 - cutover state is read only here
    from replicator.reverse.process import read_lag  # noqa: PLC0415 - the driver loads on use

    st = state.load(db)
    if st.state != "cut_over" or st.target not in ("neo4j", "hybrid"):
        return None
    return read_lag(db, opts.neo4j, opts.entity_label)


def sample(db: Path, opts: TargetOptions, kinds: tuple[str, ...], previous: LagReport | None, *,
               elapsed_s: float) -> LagReport:  # fmt: skip
    """One lag sample of the source and each sink, assessed against ``previous``. Blocks briefly."""
    kafka = KafkaSettings(bootstrap_servers=opts.bootstrap_servers)
    source, store_id = source_lag(db)
    published = published_seq(kafka, opts.topic_prefix, store_id)
    source = SourceLag(source.head_seq, published, source.backlog)
    now_ms = time.time_ns() // 1_000_000
    report = LagReport(now_ms, source)
    before = {s.sink: s for s in previous.sinks} if previous else {}
    for sink in sinks_for(kinds, opts, store_id):
        try:
            offsets = kafka_offsets(kafka, sink.group, sink.topics)
            position = sink.position()
        finally:
            sink.close()
        current = sink_lag(
            sink.name, sink.group, partitions=offsets, position=position, head_seq=source.head_seq, now_ms=now_ms
        )
        report.sinks.append(assess(before.get(sink.name), current, elapsed_s, now_ms))
    reverse = _reverse(db, opts)
    if reverse is not None:
        earlier = previous.reverse if previous else None
        report.reverse = assess(earlier, reverse_sink_lag(reverse), elapsed_s, now_ms)
        report.reverse_set_aside = reverse.set_aside
    return report
