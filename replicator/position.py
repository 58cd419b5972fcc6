"""Positions: where each stage of the pipeline is, in the terms every stage shares.

* The **source position** is the last changelog seq whose events are committed to Kafka (kept in the
  positions topic, written in the same Kafka transaction as the events).
* A **sink position** lives in the sink's destination, written in the same write as the changes it
  covers: the next Kafka offset per partition, the last heartbeat applied per partition, and the
  highest seq applied. Its **watermark** is the seq up to which *everything* is applied: a heartbeat
  with seq S on a partition follows every change with seq <= S on that partition, so once every
  partition of every topic the sink reads has applied a heartbeat >= S, the sink has applied all of
  the store's changes up to S. Lag and cutover read watermarks; they never guess from max(seq).

Pure data and arithmetic; the sinks own reading and writing these in their destinations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class PartitionKey:
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}"

    @classmethod
    def parse(cls, text: str) -> PartitionKey:
        topic, _, partition = text.rpartition("/")
        return cls(topic, int(partition))


@dataclass(frozen=True)
class Heartbeat:
    seq: int
    ts_ms: int  # when the source last saw the store at that seq


@dataclass(frozen=True)
class SinkPosition:
    """A sink's position as stored in its destination. ``partitions`` is how many partitions each
    topic it reads had when it last wrote (a partition with no heartbeat holds the watermark back)."""

    sink: str
    offsets: dict[PartitionKey, int] = field(default_factory=dict)  # next offset to consume
    heartbeats: dict[PartitionKey, Heartbeat] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)
    applied_seq: int = 0  # highest seq of any change applied
    updated_at_ms: int = 0
    #: Highest ``replicator.snapshot`` header of the heartbeats applied: the snapshot the stream follows.
    snapshot_seq: int = 0
    #: The snapshot_seq up to which the destination removed rows older than the snapshot (design §6).
    swept_seq: int = 0

    def watermark(self) -> Heartbeat | None:
        """Seq (and its store time) up to which every change is applied; None before a heartbeat has
        been applied on every partition of every topic."""
        wanted = [PartitionKey(t, p) for t, n in self.partitions.items() for p in range(n)]
        if not wanted or any(k not in self.heartbeats for k in wanted):
            return None
        lowest = min((self.heartbeats[k] for k in wanted), key=lambda h: (h.seq, h.ts_ms))
        return Heartbeat(lowest.seq, min(self.heartbeats[k].ts_ms for k in wanted))

    def merged(self, other: SinkPosition) -> SinkPosition:
        """This position advanced by ``other`` (per partition, the newer offset and heartbeat win)."""
        offsets = dict(self.offsets)
        for k, v in other.offsets.items():
            offsets[k] = max(v, offsets.get(k, 0))
        heartbeats = dict(self.heartbeats)
        for k, h in other.heartbeats.items():
            if k not in heartbeats or h.seq >= heartbeats[k].seq:
                heartbeats[k] = h
        return SinkPosition(
            sink=self.sink,
            offsets=offsets,
            heartbeats=heartbeats,
            partitions={**self.partitions, **other.partitions},
            applied_seq=max(self.applied_seq, other.applied_seq),
            updated_at_ms=max(self.updated_at_ms, other.updated_at_ms),
            snapshot_seq=max(self.snapshot_seq, other.snapshot_seq),
            swept_seq=max(self.swept_seq, other.swept_seq),
        )

    def sweep_due(self) -> int | None:
        """The snapshot seq S whose sweep is due, else None. Due once the watermark reached S (every
        row that was in the store when the snapshot read it has been applied, stamped >= S) and no
        sweep for S was recorded: a row whose seq is below S was deleted before that read, in a gap
        no changelog recorded (capture out, or a new pipeline over an older destination)."""
        mark = self.watermark()
        if self.snapshot_seq > self.swept_seq and mark is not None and mark.seq >= self.snapshot_seq:
            return self.snapshot_seq
        return None

    def to_json(self) -> str:
        return json.dumps(
            {
                "sink": self.sink,
                "offsets": {str(k): v for k, v in sorted(self.offsets.items())},
                "heartbeats": {str(k): [h.seq, h.ts_ms] for k, h in sorted(self.heartbeats.items())},
                "partitions": self.partitions,
                "applied_seq": self.applied_seq,
                "updated_at_ms": self.updated_at_ms,
                "snapshot_seq": self.snapshot_seq,
                "swept_seq": self.swept_seq,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SinkPosition:
        data: dict[str, Any] = json.loads(text)
        return cls(
            sink=str(data["sink"]),
            offsets={PartitionKey.parse(k): int(v) for k, v in data.get("offsets", {}).items()},
            heartbeats={
                PartitionKey.parse(k): Heartbeat(int(v[0]), int(v[1])) for k, v in data.get("heartbeats", {}).items()
            },
            partitions={str(k): int(v) for k, v in data.get("partitions", {}).items()},
            applied_seq=int(data.get("applied_seq", 0)),
            updated_at_ms=int(data.get("updated_at_ms", 0)),
            snapshot_seq=int(data.get("snapshot_seq", 0)),
            swept_seq=int(data.get("swept_seq", 0)),
        )
