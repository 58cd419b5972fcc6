"""The clients of the in-memory broker (``replicator.testing.broker``): a producer and a consumer
with confluent_kafka's method names, arguments, offsets and errors, and the records they exchange."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    OFFSET_STORED,
    KafkaError,
    KafkaException,
    TopicPartition,
)

if TYPE_CHECKING:
    from replicator.testing.broker import ClusterMeta, FakeBroker

Headers = list[tuple[str, bytes]]
Key = tuple[str, int]
Callback = Callable[[Any, list[TopicPartition]], None]


def error(code: int) -> KafkaException:
    return KafkaException(KafkaError(code))


@dataclass
class Txn:
    transactional_id: str
    state: str = "open"  # open | committed | aborted
    touched: set[Key] = field(default_factory=set)


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    timestamp_ms: int
    txn: Txn | None = None
    control: bool = False


class FakeMessage:
    """A consumed record (or a partition-EOF event), shaped as confluent_kafka's Message."""

    def __init__(self, topic: str, partition: int, record: Record | None, error: KafkaError | None = None) -> None:
        self._topic, self._partition, self._record, self._error = topic, partition, record, error

    def error(self) -> KafkaError | None:
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int | None:
        return None if self._record is None else self._record.offset

    def key(self) -> bytes | None:
        return None if self._record is None else self._record.key

    def value(self) -> bytes | None:
        return None if self._record is None else self._record.value

    def headers(self) -> Headers | None:
        return None if self._record is None else self._record.headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 0 if self._record is None else self._record.timestamp_ms)  # 1: TIMESTAMP_CREATE_TIME


HeaderInput = Iterable[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None


def _headers(headers: HeaderInput) -> Headers | None:
    if headers is None:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(k, v.encode() if isinstance(v, str) else (b"" if v is None else v)) for k, v in pairs]


class FakeProducer:
    """confluent_kafka.Producer's produce, poll, flush, purge, close and transactions. Deliveries are
    reported (``on_delivery``) at the next poll, flush or commit, as librdkafka does."""

    def __init__(self, broker: FakeBroker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.config = config
        self.transactional_id: str | None = config.get("transactional.id")
        self._epoch: int | None = None
        self._txn: Txn | None = None
        self._deliveries: list[tuple[Callable[..., None], KafkaError | None, FakeMessage]] = []
        self._round_robin = itertools.count()
        self.closed = False

    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, *, partition: int = -1,
        on_delivery: Callable[..., None] | None = None, headers: HeaderInput = None,
    ) -> None:  # fmt: skip
        """Append now (inside the open transaction if transactional); report at the next poll."""
        if self.transactional_id is not None and self._txn is None:
            raise error(KafkaError._STATE)  # produce outside a transaction
        if topic not in self.broker._logs:
            if on_delivery is not None:
                self._deliveries.append(
                    (on_delivery, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART), FakeMessage(topic, partition, None))
                )
            return
        count = self.broker.partitions(topic)
        if partition < 0:
            partition = (zlib.crc32(key) if key is not None else next(self._round_robin)) % count
        where = (topic, partition)
        txn = self._txn
        offset = self.broker.append(
            where, lambda o: Record(o, key, value, _headers(headers), self.broker.now_ms(), txn)
        )
        if txn is not None:
            txn.touched.add(where)
        if on_delivery is not None:
            self._deliveries.append((on_delivery, None, FakeMessage(topic, partition, self.broker._log(where)[offset])))

    def poll(self, timeout: float = 0) -> int:
        served, self._deliveries = self._deliveries, []
        for callback, err, msg in served:
            callback(err, msg)
        return len(served)

    def flush(self, timeout: float = -1) -> int:
        """Serve every delivery report; returns how many messages are still queued (0; or, with the
        broker unreachable, the ones not reported)."""
        if self.broker.unreachable:
            return len(self._deliveries)
        self.poll()
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        self._deliveries.clear()

    def close(self, timeout: float = -1) -> None:
        self.closed = True

    def init_transactions(self, timeout: float = -1) -> None:
        self.broker.check()
        if self.transactional_id is None:
            raise error(KafkaError._NOT_CONFIGURED)
        self._epoch = self.broker.init_transactions(self.transactional_id)

    def _check_epoch(self) -> None:
        self.broker.check()
        if self.transactional_id is None or self._epoch is None:
            raise error(KafkaError._STATE)
        if self.broker.fenced(self.transactional_id, self._epoch):
            raise error(KafkaError._FENCED)

    def begin_transaction(self) -> None:
        self._check_epoch()
        if self._txn is not None:
            raise error(KafkaError._STATE)
        assert self.transactional_id is not None
        self._txn = self.broker.begin(self.transactional_id)

    def commit_transaction(self, timeout: float = -1) -> None:
        self._check_epoch()
        if self._txn is None:
            raise error(KafkaError._STATE)
        self.poll()
        txn, self._txn = self._txn, None
        self.broker.end_transaction(txn, commit=True)

    def abort_transaction(self, timeout: float = -1) -> None:
        self.broker.check()
        txn, self._txn = self._txn, None
        self._deliveries.clear()
        if txn is not None and txn.state == "open":
            self.broker.end_transaction(txn, commit=False)


class FakeConsumer:
    """confluent_kafka.Consumer's subscribe/assign, consume/poll, pause/resume/seek, commit/committed,
    get_watermark_offsets, list_topics and close, over a FakeBroker."""

    def __init__(self, broker: FakeBroker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.config = config
        self.group: str | None = config.get("group.id")
        self.committed_only = config.get("isolation.level", "read_committed") == "read_committed"
        self.eof = bool(config.get("enable.partition.eof", False))
        self.subscription: list[str] = []
        self._callbacks: dict[str, Callback | None] = {}
        self._positions: dict[Key, int] = {}  # assigned partition -> next offset to read
        self._paused: set[Key] = set()
        self._eof_at: dict[Key, int] = {}
        self._pending: list[tuple[str, list[Key]]] = []  # rebalance events served at the next poll
        self.closed = False

    # --- group membership

    def subscribe(
        self, topics: list[str], on_assign: Callback | None = None, on_revoke: Callback | None = None,
        on_lost: Callback | None = None,
    ) -> None:  # fmt: skip
        self._open()
        if self.group is None:
            raise error(KafkaError._INVALID_ARG)
        self.subscription = list(topics)
        self._callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        self.broker.join(self.group, self)

    def unsubscribe(self) -> None:
        self._open()
        self.subscription = []
        if self.group is not None:
            self.broker.leave(self.group, self)
        self._revoke_now()

    def rebalanced(self, share: list[Key]) -> None:
        """Called by the broker: revoke everything, then assign ``share``, at the next poll."""
        self._pending.append(("revoke", []))
        self._pending.append(("assign", share))

    def _revoke_now(self) -> None:
        held = sorted(self._positions)
        if held and self._callbacks.get("revoke") is not None:
            callback = self._callbacks["revoke"]
            assert callback is not None
            callback(self, [TopicPartition(t, p) for t, p in held])
        self._positions.clear()
        self._paused.clear()

    def _serve_rebalance(self) -> None:
        while self._pending:
            what, share = self._pending.pop(0)
            if what == "revoke":
                self._revoke_now()
                continue
            partitions = [TopicPartition(t, p, OFFSET_INVALID) for t, p in share]
            callback = self._callbacks.get("assign")
            before = dict(self._positions)
            if callback is not None:
                callback(self, partitions)
            if self._positions == before and partitions:  # the callback did not assign: the client does
                self.assign(partitions)

    # --- assignment and positions

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._open()
        self._positions = {(tp.topic, tp.partition): self._resolve(tp) for tp in partitions}
        self._paused &= set(self._positions)

    def unassign(self) -> None:
        self._positions.clear()
        self._paused.clear()

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in sorted(self._positions)]

    def _resolve(self, tp: TopicPartition) -> int:
        where = (tp.topic, tp.partition)
        offset = tp.offset
        if offset in (OFFSET_STORED, OFFSET_INVALID):
            stored = self.broker.committed.get(self.group or "", {}).get(where)
            if stored is not None:
                return stored
            reset = str(self.config.get("auto.offset.reset", "latest"))
            offset = OFFSET_BEGINNING if reset in ("earliest", "smallest", "beginning") else OFFSET_END
        if offset == OFFSET_BEGINNING:
            return 0
        if offset == OFFSET_END:
            return self.broker.end(where)
        return int(offset)

    def seek(self, partition: TopicPartition) -> None:
        """Raises KafkaException (_STATE) for a partition not assigned, as librdkafka does."""
        where = (partition.topic, partition.partition)
        if where not in self._positions:
            raise error(KafkaError._STATE)
        self._positions[where] = self._resolve(partition)
        self._eof_at.pop(where, None)

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self._positions.get((tp.topic, tp.partition), OFFSET_INVALID))
                for tp in partitions]  # fmt: skip

    def paused(self) -> set[Key]:
        """The assigned partitions now paused (not a confluent_kafka method: for assertions)."""
        return set(self._paused)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._paused |= {(tp.topic, tp.partition) for tp in partitions} & set(self._positions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._paused -= {(tp.topic, tp.partition) for tp in partitions}

    # --- reading

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        """Serve rebalance callbacks, then up to ``num_messages`` from the assigned, unpaused partitions
        (offset order per partition). With nothing to return, the clock advances by ``timeout``."""
        self._open()
        self._serve_rebalance()
        out: list[FakeMessage] = []
        if not self.broker.unreachable:
            for where in sorted(self._positions):
                if where not in self._paused:
                    out += self._read(where, num_messages - len(out))
        if not out and self.broker.clock is not None and timeout > 0:
            self.broker.clock.advance(timeout)
        return out

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        got = self.consume(1, timeout)
        return got[0] if got else None

    def _read(self, where: Key, limit: int) -> list[FakeMessage]:
        log = self.broker._log(where)
        end = self.broker.stable_end(where) if self.committed_only else len(log)
        out: list[FakeMessage] = []
        position = self._positions[where]
        while position < end and len(out) < limit:
            record = log[position]
            position += 1
            if self.broker._visible(record, self.committed_only):
                out.append(FakeMessage(where[0], where[1], record))
        self._positions[where] = position
        if self.eof and position >= end and len(out) < limit and self._eof_at.get(where) != position:
            self._eof_at[where] = position
            out.append(FakeMessage(where[0], where[1], None, KafkaError(KafkaError._PARTITION_EOF)))
        return out

    # --- offsets

    def commit(self, message: FakeMessage | None = None, offsets: list[TopicPartition] | None = None,
               asynchronous: bool = True) -> None:  # fmt: skip
        self._open()
        self.broker.check()
        if self.group is None:
            raise error(KafkaError._INVALID_ARG)
        chosen = offsets if offsets is not None else [TopicPartition(t, p, o) for (t, p), o in self._positions.items()]
        stored = self.broker.committed.setdefault(self.group, {})
        for tp in chosen:
            stored[(tp.topic, tp.partition)] = tp.offset

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        self._open()
        self.broker.check()
        stored = self.broker.committed.get(self.group or "", {})
        return [TopicPartition(tp.topic, tp.partition, stored.get((tp.topic, tp.partition), OFFSET_INVALID))
                for tp in partitions]  # fmt: skip

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        """(low, high); ``cached`` answers only for assigned partitions, as librdkafka's fetch cache."""
        where = (partition.topic, partition.partition)
        if cached and where not in self._positions:
            return OFFSET_INVALID, OFFSET_INVALID
        if not cached:
            self.broker.check()
        return 0, self.broker.end(where)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> ClusterMeta:
        self._open()
        self.broker.check()
        return self.broker.metadata()

    def close(self) -> None:
        if self.closed:
            return
        if self.group is not None and self.subscription:
            self.broker.leave(self.group, self)
        self._revoke_now()
        self.closed = True

    def _open(self) -> None:
        if self.closed:
            raise RuntimeError("Consumer closed")
