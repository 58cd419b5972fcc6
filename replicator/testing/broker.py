"""An in-memory Kafka for unit tests: topics with partitions and offsets, committed offsets per
group, transactions with read_committed semantics, and group rebalances with their callbacks.

``FakeBroker.consumer(config)`` and ``FakeBroker.producer(config)`` answer the methods of
confluent_kafka's Consumer and Producer that the sinks and the source call, with the same argument
names, offsets and errors (KafkaException carrying a KafkaError), so code written against the real
clients runs on it unchanged. tests/integration/test_kafka_contract.py runs the same tests against this
fake and the real broker, so the two cannot drift apart.

What it models as Kafka does: a transaction's commit or abort writes one control record per partition
it touched (offsets skip it); a read_committed consumer stops at the first offset of an open
transaction (the last stable offset) and never returns an aborted record; a second producer with the
same ``transactional.id`` fences the first (its open transaction is aborted, its commit fails);
``subscribe`` joins a group whose partitions are split among its members (range, eager: every member is
revoked everything, then assigned its share, inside its next ``consume`` or ``poll``). What it does not:
auto-commit (set ``enable.auto.commit`` false), retention, compaction, timestamps beyond produce time.

Not thread-safe: one test thread drives producers and consumers. With a ``FakeClock``, a ``consume``
that finds nothing advances the clock by its timeout, as a real one would block for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError

from replicator.testing.broker_clients import FakeConsumer, FakeMessage, FakeProducer, Key, Record, Txn, error
from replicator.testing.clock import FakeClock

__all__ = ["FakeBroker", "FakeConsumer", "FakeProducer"]


@dataclass
class TopicMeta:
    partitions: dict[int, object]
    error: KafkaError | None = None


@dataclass
class ClusterMeta:
    topics: dict[str, TopicMeta]


class FakeBroker:
    """One in-memory cluster. ``unreachable = True`` makes every client call fail as a broker that
    does not answer would (KafkaException _TRANSPORT; ``consume`` returns nothing)."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.unreachable = False
        self._logs: dict[str, list[list[Record]]] = {}
        self.committed: dict[str, dict[Key, int]] = {}  # group -> partition -> next offset
        self._members: dict[str, list[FakeConsumer]] = {}
        self._epochs: dict[str, int] = {}
        self._open: dict[str, Txn] = {}  # transactional.id -> its open transaction

    # --- administration (what an AdminClient or the source's topic creation does)

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create ``name``; an existing topic is kept as it is."""
        self._logs.setdefault(name, [[] for _ in range(partitions)])

    def topics(self) -> list[str]:
        return sorted(self._logs)

    def partitions(self, topic: str) -> int:
        return len(self._logs[topic])

    def records(
        self, topic: str, partition: int, committed_only: bool = True
    ) -> list[tuple[bytes | None, bytes | None]]:
        """(key, value) of every data record of a partition a read_committed (or, with
        ``committed_only=False``, a read_uncommitted) consumer would see, in offset order."""
        log = self._log((topic, partition))
        end = self.stable_end((topic, partition)) if committed_only else len(log)
        return [(r.key, r.value) for r in log[:end] if self._visible(r, committed_only)]

    def messages(self, topic: str, partition: int = 0, committed_only: bool = True) -> list[FakeMessage]:
        """The data records of a partition as a consumer would receive them, in offset order."""
        log = self._log((topic, partition))
        end = self.stable_end((topic, partition)) if committed_only else len(log)
        return [FakeMessage(topic, partition, r) for r in log[:end] if self._visible(r, committed_only)]

    def producer(self, config: Mapping[str, Any] | None = None) -> FakeProducer:
        return FakeProducer(self, dict(config or {}))

    def consumer(self, config: Mapping[str, Any] | None = None) -> FakeConsumer:
        return FakeConsumer(self, dict(config or {}))

    # --- the log

    def check(self) -> None:
        if self.unreachable:
            raise error(KafkaError._TRANSPORT)

    def _log(self, key: Key) -> list[Record]:
        topic, partition = key
        if topic not in self._logs or not 0 <= partition < len(self._logs[topic]):
            raise error(KafkaError._UNKNOWN_PARTITION)
        return self._logs[topic][partition]

    def end(self, key: Key) -> int:
        """The log end offset (high watermark): control records included."""
        return len(self._log(key))

    def stable_end(self, key: Key) -> int:
        """The last stable offset: the first record of a transaction still open, else the end."""
        log = self._log(key)
        return next((r.offset for r in log if r.txn is not None and r.txn.state == "open"), len(log))

    @staticmethod
    def _visible(record: Record, committed_only: bool) -> bool:
        if record.control:
            return False
        return not committed_only or record.txn is None or record.txn.state == "committed"

    def append(self, key: Key, record: Callable[[int], Record]) -> int:
        log = self._log(key)
        log.append(record(len(log)))
        return len(log) - 1

    def metadata(self) -> ClusterMeta:
        return ClusterMeta({t: TopicMeta({i: object() for i in range(len(p))}) for t, p in self._logs.items()})

    def now_ms(self) -> int:
        return 0 if self.clock is None else int(self.clock.time() * 1000)

    # --- transactions

    def init_transactions(self, transactional_id: str) -> int:
        """A new epoch for ``transactional_id``: the previous instance's open transaction is aborted and
        the instance fenced."""
        previous = self._open.pop(transactional_id, None)
        if previous is not None:
            self.end_transaction(previous, commit=False)
        self._epochs[transactional_id] = self._epochs.get(transactional_id, 0) + 1
        return self._epochs[transactional_id]

    def fenced(self, transactional_id: str, epoch: int) -> bool:
        return self._epochs.get(transactional_id) != epoch

    def begin(self, transactional_id: str) -> Txn:
        txn = Txn(transactional_id)
        self._open[transactional_id] = txn
        return txn

    def end_transaction(self, txn: Txn, commit: bool) -> None:
        """Commit or abort: one control record per partition the transaction wrote to."""
        txn.state = "committed" if commit else "aborted"
        if self._open.get(txn.transactional_id) is txn:
            del self._open[txn.transactional_id]
        for key in sorted(txn.touched):
            self.append(key, lambda offset: Record(offset, None, None, None, self.now_ms(), txn, control=True))

    # --- groups

    def join(self, group: str, member: FakeConsumer) -> None:
        members = self._members.setdefault(group, [])
        if member not in members:
            members.append(member)
        self._rebalance(group)

    def leave(self, group: str, member: FakeConsumer) -> None:
        members = self._members.get(group, [])
        if member in members:
            members.remove(member)
            self._rebalance(group)

    def _rebalance(self, group: str) -> None:
        """Range assignment, eager: each member is revoked what it holds, then assigned its share."""
        members = self._members.get(group, [])
        shares: dict[int, list[Key]] = {id(m): [] for m in members}
        topics = sorted({t for m in members for t in m.subscription if t in self._logs})
        for topic in topics:
            wanting = [m for m in members if topic in m.subscription]
            count = len(self._logs[topic])
            for i, member in enumerate(wanting):
                lo, hi = count * i // len(wanting), count * (i + 1) // len(wanting)
                shares[id(member)] += [(topic, p) for p in range(lo, hi)]
        for member in members:
            member.rebalanced(shares[id(member)])
