"""Kafka side of the source: the topics, the committed source position, the transactional producer.

Every call blocks at most ``KafkaSettings.timeout_s`` (or the given timeout) and raises
TransportError (broker unreachable or refused; the daemon retries with backoff) or SourceError (a
configuration the source must not run with, e.g. unequal partition counts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from replicator.events.registry import RegistryError
from replicator.source.convert import Message
from replicator.source.store import SourceError
from replicator.store.schema import TABLES
from replicator.transport import kafka as transport
from replicator.transport.clients import ConsumerFactory, ProducerFactory
from replicator.transport.kafka import TransportError
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import change_topic, positions_topic

_COMPACT: Final = {"cleanup.policy": "compact"}
log = logging.getLogger("replicator.source")


def transactional_id(prefix: str, store_id: str) -> str:
    """Stable per (store, prefix): a restarted instance fences the previous one (a zombie's
    transactions are aborted and its later writes refused)."""
    return f"replicator-source.{prefix}.{store_id}"


def _unreachable(settings: KafkaSettings, what: str, exc: object) -> TransportError:
    return TransportError(
        f"Kafka at {settings.bootstrap_servers} did not {what}: {exc}",
        hint="is the broker up? the source retries and catches up when it answers",
    )


def ensure_topics(settings: KafkaSettings, prefix: str, partitions: int) -> dict[str, int]:
    """Create the change topics (``partitions`` each, compacted) and the positions topic (1 partition,
    compacted) when absent, replicated as ``settings.replication`` decides. Returns table -> partition
    count as the broker has them. Raises SourceError when entities and embeddings differ (the sinks
    pair them by partition number), TransportError, or ConfigError (a replication the cluster cannot
    give). Logs what it created, and existing topics with fewer replicas than it would give them."""
    wanted = {change_topic(prefix, t): partitions for t in TABLES} | {positions_topic(prefix): 1}
    ensured = transport.ensure_topics(settings, wanted, _COMPACT)
    _log_replication(ensured)
    admin = AdminClient(settings.common())
    counts = _partition_counts(admin, settings, [change_topic(prefix, t) for t in TABLES])
    result = {t: counts[change_topic(prefix, t)] for t in TABLES}
    if result["entities"] != result["embeddings"]:
        raise SourceError(
            f"{change_topic(prefix, 'entities')} has {result['entities']} partitions but "
            f"{change_topic(prefix, 'embeddings')} has {result['embeddings']}; an entity and its embedding must "
            "land on the same partition number",
            hint="give both topics the same partition count (kafka-topics --alter), or use a new --topic-prefix",
        )
    return result


def _log_replication(ensured: transport.EnsuredTopics) -> None:
    r = ensured.replication
    if r is None:
        return
    if ensured.created:
        log.info(
            "event=topics_created topics=%s replication_factor=%d min_insync_replicas=%d brokers=%d",
            ",".join(ensured.created), r.factor, r.min_insync, ensured.brokers,
        )  # fmt: skip
    for topic, replicas in ensured.fewer_replicas.items():
        log.warning(
            "event=topic_fewer_replicas topic=%s replicas=%d wanted=%d "
            "hint='a broker lost with it loses committed changes: raise its replication (kafka-reassign-partitions)'",
            topic, replicas, r.factor,
        )  # fmt: skip


def _partition_counts(admin: AdminClient, settings: KafkaSettings, topics: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(20):  # metadata of a just-created topic can lag a moment
        try:
            meta = admin.list_topics(timeout=settings.timeout_s).topics
        except KafkaException as exc:
            raise _unreachable(settings, "describe topics", exc) from exc
        counts = {t: len(meta[t].partitions) for t in topics if t in meta and meta[t].partitions}
        if len(counts) == len(topics):
            return counts
        time.sleep(0.25)
    raise _unreachable(settings, f"show metadata of {', '.join(t for t in topics if t not in counts)}", "timeout")


@dataclass(frozen=True)
class SourcePosition:
    """The last committed position: every changelog row with seq <= ``seq`` is in Kafka (or, while
    ``snapshot`` is a cursor dict, the snapshot at ``seq`` is published up to that cursor)."""

    seq: int
    snapshot: dict[str, Any] | None
    ts_ms: int
    #: The first read seq of the snapshot this stream follows (None: written by an older version).
    snapshot_seq: int | None = None


def _position_of(value: bytes) -> SourcePosition:
    data = json.loads(value)
    snapshot_seq = data.get("snapshot_seq")
    return SourcePosition(
        int(data["seq"]), data.get("snapshot"), int(data.get("ts_ms", 0)),
        None if snapshot_seq is None else int(snapshot_seq),
    )  # fmt: skip


def read_position(
    settings: KafkaSettings, prefix: str, store_id: str, consumer_of: ConsumerFactory = Consumer
) -> SourcePosition | None:
    """The newest committed position of ``store_id`` (read_committed, up to the end the topic had
    when asked), None when it has none or the topic does not exist. The one reader of the positions topic: lag asks it
    too. The source calls it after ``init_transactions`` so that a fenced predecessor's open
    transaction is aborted and cannot hold the last stable offset back. ``consumer_of`` builds the
    consumer (a test passes the in-memory broker's). Raises TransportError."""
    topic = positions_topic(prefix)
    consumer = consumer_of(
        {
            **settings.common(),
            "group.id": f"replicator-source-position-{store_id}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    found: SourcePosition | None = None
    try:
        try:
            described = consumer.list_topics(topic, timeout=settings.timeout_s).topics.get(topic)
            if described is None or described.error is not None:
                return None  # no source has created it yet (lag may look before the source starts)
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=settings.timeout_s)
        except KafkaException as exc:
            raise _unreachable(settings, f"give the offsets of {topic}", exc) from exc
        if high <= low:
            return None
        tp = TopicPartition(topic, 0, low)
        consumer.assign([tp])
        deadline = time.monotonic() + settings.timeout_s * 3
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                # Read what the topic held when asked (offsets below ``high``), not to its end: a live
                # source always has its next transaction open, and a read_committed consumer may not
                # see the end until it commits, then the next one opens (lag under a live source).
                if consumer.position([tp])[0].offset >= high:
                    return found
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return found
                raise _unreachable(settings, f"deliver {topic}", err)
            value = msg.value()
            if msg.key() == store_id.encode() and value is not None:
                found = _position_of(value)
            offset = msg.offset()
            if offset is not None and offset + 1 >= high:
                return found
        raise _unreachable(settings, f"deliver {topic} to its end", "timeout")
    finally:
        consumer.close()


#: What a producer sees once a newer one with its transactional id has started (librdkafka's local
#: code, and the broker's two).
_FENCED_CODES: Final = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


def _fenced(exc: KafkaException) -> bool:
    return bool(exc.args) and isinstance(exc.args[0], KafkaError) and exc.args[0].code() in _FENCED_CODES


class TransactionalPublisher:
    """One transactional, idempotent producer (acks=all). ``publish`` sends a batch and the position
    in ONE transaction and returns only once it committed; on any failure it aborts (best effort)
    and raises TransportError: nothing of the batch is visible to read_committed consumers."""

    def __init__(
        self,
        settings: KafkaSettings,
        txn_id: str,
        transaction_timeout_s: float,
        reframe: Callable[[str, bytes], bytes] | None = None,
        producer_of: ProducerFactory = Producer,
    ) -> None:
        self.settings = settings
        self.txn_id = txn_id
        #: With a Schema Registry: (topic, single-object value) -> Confluent-framed value.
        self.reframe = reframe
        self.producer = producer_of(
            {
                **settings.producer(),  # idempotent, acks=all, the size limits of max_message_bytes
                "transactional.id": txn_id,
                "transaction.timeout.ms": int(transaction_timeout_s * 1000),
                "message.timeout.ms": int(transaction_timeout_s * 1000),
                "partitioner": "murmur2_random",
            }
        )
        self.errors: list[KafkaError] = []
        try:
            self.producer.init_transactions(settings.timeout_s)
        except KafkaException as exc:
            self.close()
            raise _unreachable(settings, f"initialise transactions for {txn_id}", exc) from exc

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self.errors.append(err)

    def publish(self, messages: list[Message], position: tuple[str, bytes, bytes]) -> None:
        """Produce ``messages`` then the position record ``(topic, key, value)``, commit. Blocks."""
        self.errors.clear()
        try:
            self.producer.begin_transaction()
            for m in messages:
                value = m.value if m.value is None or self.reframe is None else self.reframe(m.topic, m.value)
                kwargs: dict[str, Any] = {"key": m.key, "value": value, "headers": m.headers}
                if m.partition is not None:
                    kwargs["partition"] = m.partition
                self._produce(m.topic, kwargs)
            topic, key, value = position
            self._produce(topic, {"key": key, "value": value, "partition": 0})
            self.producer.commit_transaction(self.settings.timeout_s)
        except (KafkaException, BufferError, RegistryError) as exc:
            self.abort()
            if isinstance(exc, KafkaException) and _fenced(exc):
                raise SourceError(
                    f"another source instance took over transactional id {self.txn_id} (the same store and topic "
                    "prefix) and fenced this one",
                    hint="run one source per store and prefix: stop the other instance, or this one. Retrying would "
                    "fence the other back, and the two would take turns",
                ) from exc
            raise _unreachable(self.settings, "commit a transaction", exc) from exc
        if self.errors:
            raise _unreachable(self.settings, "deliver a committed transaction", self.errors[0])

    def _produce(self, topic: str, kwargs: dict[str, Any]) -> None:
        while True:
            try:
                self.producer.produce(topic, on_delivery=self._on_delivery, **kwargs)
            except BufferError:  # queue full: let deliveries drain, then retry
                self.producer.poll(0.1)
            else:
                self.producer.poll(0)
                return

    def abort(self) -> None:
        # Best effort: the producer is rebuilt, and init_transactions of the next one aborts it anyway.
        with contextlib.suppress(KafkaException):
            self.producer.abort_transaction(min(self.settings.timeout_s, 5.0))

    def close(self) -> None:
        """Release the producer's threads and sockets now. Idempotent; does not block on a dead broker:
        what is still queued belongs to an aborted transaction and is purged first. Without this a
        dropped producer lives until the garbage collector breaks its cycle (the delivery callback
        holds this object), reconnecting and logging all the while -- one more per broker outage."""
        with contextlib.suppress(KafkaException):
            self.producer.purge()
        with contextlib.suppress(KafkaException, RuntimeError), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "abort_transaction failed during close"
            self.producer.close()
