"""Read a prefix's change topics back (read_committed) and fold them into the store state they
describe: per table, row id -> the newest ``after`` record (or None once deleted), newest
``source.seq`` winning per key, as a sink does. Used by the source's tests and benchmark to check
what reached Kafka; blocks while reading; raises TransportError when the broker does not answer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from replicator.events.avro import HEARTBEAT, decode_any, decode_key
from replicator.store.schema import TABLES
from replicator.transport.kafka import TransportError
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import change_topic


@dataclass
class Replay:
    rows: dict[str, dict[int, tuple[int, dict[str, Any] | None]]] = field(
        default_factory=lambda: {t: {} for t in TABLES}
    )
    stream_seqs: Counter[int] = field(default_factory=Counter)  # changelog seq -> events seen with it
    snapshot_seqs: set[int] = field(default_factory=set)
    snapshot_events: int = 0
    snapshot_keys: Counter[tuple[str, int]] = field(default_factory=Counter)  # (table, row id) -> op=r events
    #: (table, row id) -> seqs of its events, stream and snapshot alike (coalescing: an event covers
    #: the lower seqs of its row in its page, docs/capture.md)
    key_seqs: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    last_markers: int = 0
    heartbeats: int = 0
    tombstones: int = 0
    # (table, partition) -> highest heartbeat seq seen there
    heartbeat_seq: dict[tuple[str, int], int] = field(default_factory=dict)

    def live(self, table: str) -> dict[int, dict[str, Any]]:
        """Rows that exist at the end of the stream."""
        return {k: rec for k, (_, rec) in self.rows[table].items() if rec is not None}

    def apply(self, table: str, partition: int, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.tombstones += 1
            return
        name, record = decode_any(value)
        seq = int(record["source"]["seq"])
        if name == HEARTBEAT:
            self.heartbeats += 1
            where = (table, partition)
            self.heartbeat_seq[where] = max(self.heartbeat_seq.get(where, -1), seq)
            return
        if record["source"]["snapshot"] == "false":
            self.stream_seqs[seq] += 1
        else:
            self.snapshot_events += 1
            self.snapshot_seqs.add(seq)
            self.last_markers += record["source"]["snapshot"] == "last"
        row_id = decode_key(key)
        self.key_seqs.setdefault((table, row_id), []).append(seq)
        if record["op"] == "r":
            self.snapshot_keys[(table, row_id)] += 1
        current = self.rows[table].get(row_id)
        if current is None or seq >= current[0]:
            self.rows[table][row_id] = (seq, None if record["op"] == "d" else record["after"])


#: Called for each committed message: (table, partition, key, value; None for a tombstone).
Fold = Callable[[str, int, bytes, bytes | None], None]


def replay(settings: KafkaSettings, prefix: str, timeout_s: float = 60.0) -> Replay:
    """Consume every partition of the three change topics from the start to their end."""
    result = Replay()
    read_topics(settings, prefix, result.apply, timeout_s)
    return result


def read_topics(settings: KafkaSettings, prefix: str, fold: Fold, timeout_s: float = 60.0) -> None:
    """Hand every committed message of the prefix's change topics to ``fold``, from the start to the
    end under read_committed. Blocks; raises TransportError if the end is not reached in time."""
    consumer = Consumer(
        {
            **settings.common(),
            "group.id": f"replay-{prefix}-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            **settings.fetch_limits(),
        }
    )
    try:
        meta = consumer.list_topics(timeout=settings.timeout_s).topics
        parts = [
            TopicPartition(change_topic(prefix, t), p, 0)
            for t in TABLES
            if change_topic(prefix, t) in meta
            for p in meta[change_topic(prefix, t)].partitions
        ]
        table_of = {change_topic(prefix, t): t for t in TABLES}
        consumer.assign(parts)
        pending = {(tp.topic, tp.partition) for tp in parts}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    # commit_transaction returns before the commit markers reach the partitions: the
                    # end under read_committed (the LSO) trails the high watermark until they do.
                    tp = TopicPartition(msg.topic() or "", msg.partition() or 0)
                    _, high = consumer.get_watermark_offsets(tp, timeout=settings.timeout_s, cached=False)
                    if (msg.offset() or 0) >= high:
                        pending.discard((tp.topic, tp.partition))
                    continue
                raise TransportError(f"replay of {prefix} failed: {err}", hint="is the broker up?")
            topic, partition, key = msg.topic() or "", msg.partition() or 0, msg.key() or b""
            fold(table_of[topic], partition, key, msg.value())
        if pending:
            raise TransportError(f"replay of {prefix} did not reach the end of {sorted(pending)}", hint="retry")
    finally:
        consumer.close()
