"""The in-memory broker (``replicator.testing.broker``) against the real Kafka: every test here runs
twice, once on each, so the fake the unit tests rely on cannot drift from the broker it stands for
(offsets with transaction markers, read_committed, fencing, committed offsets per group, seek and
pause, group rebalances with their callbacks)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from replicator.testing.broker import FakeBroker
from replicator.transport.kafka import create_topic, delete_topic
from replicator.transport.settings import KafkaSettings

WAIT_S = 60.0  # a real group's join and rebalance take seconds; the fake answers at once


class Cluster:
    """Topics, consumers and producers on the fake or the real broker, closed at the end."""

    def __init__(self, kafka: KafkaSettings | None) -> None:
        self.kafka = kafka
        self.fake = FakeBroker() if kafka is None else None
        self.topics: list[str] = []
        self.clients: list[Any] = []

    def topic(self, partitions: int = 1) -> str:
        name = f"contract.{uuid.uuid4().hex[:10]}"
        if self.fake is not None:
            self.fake.create_topic(name, partitions)
        else:
            assert self.kafka is not None
            create_topic(self.kafka, name, partitions)
        self.topics.append(name)
        return name

    def consumer(self, **config: Any) -> Any:
        full = {"enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": True,
                "group.id": f"contract-{uuid.uuid4().hex[:8]}", **config}  # fmt: skip
        if self.fake is not None:
            client: Any = self.fake.consumer(full)
        else:
            assert self.kafka is not None
            client = Consumer({**self.kafka.common(), "session.timeout.ms": 6000, "log_level": 0, **full})
        self.clients.append(client)
        return client

    def producer(self, **config: Any) -> Any:
        if self.fake is not None:
            return self.fake.producer(config)
        assert self.kafka is not None
        return Producer({**self.kafka.common(), "enable.idempotence": True, "acks": "all", "linger.ms": 0,
                         "log_level": 0, **config})  # fmt: skip

    def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(RuntimeError):  # closed by the test
                client.close()
        if self.kafka is not None:
            for topic in self.topics:
                delete_topic(self.kafka, topic)


@pytest.fixture(params=["fake", "kafka"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    kafka = request.getfixturevalue("kafka") if request.param == "kafka" else None
    made = Cluster(kafka)
    try:
        yield made
    finally:
        made.close()


def read_to_end(consumer: Any, partitions: int = 1) -> list[Any]:
    """Every message until each assigned partition reported its end (enable.partition.eof)."""
    got: list[Any] = []
    ends: set[int] = set()
    deadline = time.monotonic() + WAIT_S
    while len(ends) < partitions:
        assert time.monotonic() < deadline, f"no end of partition after {WAIT_S} s; read {len(got)}"
        for msg in consumer.consume(num_messages=100, timeout=0.2):
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                ends.add(msg.partition())
            else:
                got.append(msg)
                ends.discard(msg.partition())
    return got


def values(messages: list[Any]) -> list[bytes | None]:
    return [m.value() for m in messages]


def txn_producer(cluster: Cluster, txn_id: str) -> Any:
    producer = cluster.producer(**{"transactional.id": txn_id, "transaction.timeout.ms": 10_000})
    producer.init_transactions(30)
    return producer


def in_transaction(producer: Any, topic: str, items: list[bytes], commit: bool) -> None:
    producer.begin_transaction()
    for item in items:
        producer.produce(topic, value=item, key=item, partition=0)
    producer.flush(30)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def test_records_come_back_in_offset_order_with_their_key_value_and_headers(cluster: Cluster) -> None:
    topic = cluster.topic()
    producer = cluster.producer()
    delivered: list[tuple[KafkaError | None, int]] = []
    for i in range(5):
        producer.produce(topic, value=b"v%d" % i, key=b"k%d" % i, partition=0, headers=[("h", b"%d" % i)],
                         on_delivery=lambda err, msg: delivered.append((err, msg.offset())))  # fmt: skip
    assert producer.flush(30) == 0
    assert delivered == [(None, i) for i in range(5)]
    consumer = cluster.consumer()
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = read_to_end(consumer)
    assert [(m.offset(), m.key(), m.value(), m.headers()) for m in got] == [
        (i, b"k%d" % i, b"v%d" % i, [("h", b"%d" % i)]) for i in range(5)
    ]


def test_read_committed_never_returns_an_aborted_record_and_markers_take_offsets(cluster: Cluster) -> None:
    topic = cluster.topic()
    producer = txn_producer(cluster, f"contract-{uuid.uuid4().hex[:8]}")
    in_transaction(producer, topic, [b"a", b"b"], commit=True)
    in_transaction(producer, topic, [b"x"], commit=False)
    in_transaction(producer, topic, [b"c"], commit=True)

    committed = cluster.consumer(**{"isolation.level": "read_committed"})
    committed.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = read_to_end(committed)
    # a@0 b@1 commit-marker@2 x@3 abort-marker@4 c@5 commit-marker@6
    assert [(m.offset(), m.value()) for m in got] == [(0, b"a"), (1, b"b"), (5, b"c")]
    assert committed.get_watermark_offsets(TopicPartition(topic, 0), timeout=30) == (0, 7)

    everything = cluster.consumer(**{"isolation.level": "read_uncommitted"})
    everything.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    assert values(read_to_end(everything)) == [b"a", b"b", b"x", b"c"]


def test_an_open_transaction_holds_read_committed_consumers_back(cluster: Cluster) -> None:
    topic = cluster.topic()
    producer = txn_producer(cluster, f"contract-{uuid.uuid4().hex[:8]}")
    producer.begin_transaction()
    producer.produce(topic, value=b"pending", partition=0)
    producer.flush(30)

    committed = cluster.consumer(**{"isolation.level": "read_committed"})
    committed.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    assert read_to_end(committed) == []
    everything = cluster.consumer(**{"isolation.level": "read_uncommitted"})
    everything.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    assert values(read_to_end(everything)) == [b"pending"]

    producer.commit_transaction(30)
    assert values(read_to_end(committed)) == [b"pending"]


def test_a_second_producer_with_the_same_transactional_id_fences_the_first(cluster: Cluster) -> None:
    topic = cluster.topic()
    txn_id = f"contract-{uuid.uuid4().hex[:8]}"
    zombie = txn_producer(cluster, txn_id)
    zombie.begin_transaction()
    zombie.produce(topic, value=b"zombie", partition=0)
    zombie.flush(30)

    successor = txn_producer(cluster, txn_id)  # aborts the zombie's open transaction
    in_transaction(successor, topic, [b"successor"], commit=True)
    with pytest.raises(KafkaException):
        zombie.commit_transaction(30)

    consumer = cluster.consumer(**{"isolation.level": "read_committed"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    assert values(read_to_end(consumer)) == [b"successor"]


def test_committed_offsets_belong_to_their_group_and_start_its_next_member(cluster: Cluster) -> None:
    topic = cluster.topic()
    producer = cluster.producer()
    for i in range(5):
        producer.produce(topic, value=b"%d" % i, partition=0)
    producer.flush(30)
    group = f"contract-{uuid.uuid4().hex[:8]}"
    first = cluster.consumer(**{"group.id": group})
    first.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    read_to_end(first)
    first.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)

    assert [tp.offset for tp in first.committed([TopicPartition(topic, 0)], timeout=30)] == [3]
    other = cluster.consumer()
    assert [tp.offset for tp in other.committed([TopicPartition(topic, 0)], timeout=30)] == [OFFSET_INVALID]
    first.close()

    second = cluster.consumer(**{"group.id": group})
    second.assign([TopicPartition(topic, 0, OFFSET_STORED)])
    assert [m.offset() for m in read_to_end(second)] == [3, 4]


def test_seek_rewinds_and_pause_holds_a_partition_back(cluster: Cluster) -> None:
    topic = cluster.topic(partitions=2)
    producer = cluster.producer()
    for i in range(4):
        for partition in (0, 1):
            producer.produce(topic, value=b"%d/%d" % (partition, i), partition=partition)
    producer.flush(30)
    consumer = cluster.consumer()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
    consumer.pause([TopicPartition(topic, 1)])
    assert values(read_to_end(consumer, partitions=1)) == [b"0/%d" % i for i in range(4)]

    consumer.resume([TopicPartition(topic, 1)])
    consumer.seek(TopicPartition(topic, 0, 2))
    got = read_to_end(consumer, partitions=2)
    assert sorted(m.value() or b"" for m in got) == sorted([b"0/2", b"0/3"] + [b"1/%d" % i for i in range(4)])


def test_seeking_a_partition_not_assigned_fails(cluster: Cluster) -> None:
    topic = cluster.topic(partitions=2)
    consumer = cluster.consumer()
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    with pytest.raises(KafkaException):
        consumer.seek(TopicPartition(topic, 1, 0))


def poll_until(consumers: list[Any], done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, "the group did not settle"
        for consumer in consumers:
            consumer.consume(num_messages=10, timeout=0.1)


def test_a_group_shares_its_partitions_and_revokes_before_it_reassigns(cluster: Cluster) -> None:
    topic = cluster.topic(partitions=2)
    group = f"contract-{uuid.uuid4().hex[:8]}"
    held: dict[str, set[int]] = {"a": set(), "b": set()}
    trace: list[tuple[str, str, list[int]]] = []

    def member(name: str) -> Any:
        def on_assign(consumer: Any, partitions: list[TopicPartition]) -> None:
            trace.append((name, "assign", sorted(tp.partition for tp in partitions)))
            held[name] |= {tp.partition for tp in partitions}

        def on_revoke(consumer: Any, partitions: list[TopicPartition]) -> None:
            trace.append((name, "revoke", sorted(tp.partition for tp in partitions)))
            held[name] -= {tp.partition for tp in partitions}

        consumer = cluster.consumer(**{"group.id": group, "enable.partition.eof": False})
        consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        return consumer

    a = member("a")
    poll_until([a], lambda: held["a"] == {0, 1})
    b = member("b")
    poll_until([a, b], lambda: len(held["a"]) == 1 and len(held["b"]) == 1)
    assert held["a"] | held["b"] == {0, 1}
    assert ("a", "revoke", [0, 1]) in trace
    assert trace.index(("a", "revoke", [0, 1])) < trace.index(("b", "assign", sorted(held["b"])))

    b.close()
    poll_until([a], lambda: held["a"] == {0, 1})
