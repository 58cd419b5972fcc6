"""Thin helpers over confluent-kafka: create a topic, publish keyed bytes, read them back.

Every call blocks up to ``KafkaSettings.timeout_s`` and raises TransportError naming the broker when
it cannot be reached, instead of librdkafka's endless silent retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Final, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from replicator.errors import ConfigError, Fatal, Retryable
from replicator.transport.settings import KafkaSettings, Replication

T = TypeVar("T")

#: Errors that a broker clears by itself within seconds: a group coordinator moving or still loading
#: its offsets (a fresh broker), a partition leader being elected, a rebalance. The same request,
#: sent again shortly, succeeds.
TRANSIENT: Final = frozenset({
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._WAIT_COORD, KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_ENOUGH_REPLICAS,
})  # fmt: skip
#: Errors that say no broker answers at all: waiting again would only repeat the client's timeout.
UNREACHABLE: Final = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT})

#: Refusals that waiting does not fix: an operator must grant a right or change a broker policy.
_REFUSALS = frozenset({
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.POLICY_VIOLATION, KafkaError.INVALID_CONFIG,
})  # fmt: skip


class TransportError(Retryable):
    """Kafka is unreachable or refused a request."""


class KafkaRefused(Fatal):
    """The broker answered with an error that waiting will not clear (authorization, a bad request)."""


def _unreachable(settings: KafkaSettings, what: str, exc: object) -> TransportError:
    return TransportError(
        f"Kafka at {settings.bootstrap_servers} did not {what}: {exc}",
        hint="is the broker up? `replicator stack status` for the local stack, or check REPLICATOR_KAFKA_BOOTSTRAP",
    )


def classify(settings: KafkaSettings, what: str, exc: KafkaException) -> TransportError | KafkaRefused:
    """A client exception as our error: Retryable (TransportError) when the broker is unreachable or
    the error clears by itself, Fatal (KafkaRefused) otherwise. Pure."""
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if err is None or err.code() in UNREACHABLE:
        return _unreachable(settings, what, err if err is not None else exc)
    if err.code() in TRANSIENT or err.retriable():
        return TransportError(
            f"Kafka at {settings.bootstrap_servers} could not {what} yet: {err.str()} ({err.name()})",
            hint="the broker is busy (a group coordinator loading or moving, a leader election): retry in a few "
            "seconds; if it lasts, check the broker's log",
        )
    return KafkaRefused(
        f"Kafka at {settings.bootstrap_servers} refused to {what}: {err.str()} ({err.name()})",
        hint="check the broker's settings and this client's permissions (ACLs) for the group and topics",
    )


def retrying(settings: KafkaSettings, what: str, call: Callable[[], T], bound_s: float | None = None) -> T:
    """``call()``, sent again with capped backoff while it fails with a TRANSIENT broker error, for at
    most ``bound_s`` (default: the settings' timeout). Blocks. Raises TransportError (still transient
    at the bound, or unreachable: reported at once) or KafkaRefused, never a raw KafkaException."""
    deadline = time.monotonic() + (settings.timeout_s if bound_s is None else bound_s)
    delay = 0.1
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = classify(settings, what, exc)
            code = exc.args[0].code() if exc.args and isinstance(exc.args[0], KafkaError) else None
            if not isinstance(error, TransportError) or code is None or code in UNREACHABLE:
                raise error from exc
            if time.monotonic() + delay > deadline:
                raise error from exc
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _await(settings: KafkaSettings, what: str, future: Future[None], already_done: int) -> bool:
    """Wait for one admin operation; the error code ``already_done`` means the goal already holds
    (returns False then, True when the operation did it)."""
    try:
        future.result(timeout=settings.timeout_s)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == already_done:
            return False
        raise _unreachable(settings, what, exc) from exc
    except TimeoutError as exc:  # concurrent.futures.TimeoutError is TimeoutError on 3.11
        raise _unreachable(settings, what, exc) from exc
    return True


def ensure_message_limit(settings: KafkaSettings, topics: list[str], admin: AdminClient | None = None) -> None:
    """Raise each topic's ``max.message.bytes`` to ``settings.max_message_bytes`` where it is lower (a topic
    made by an older version, or by hand, with the broker's 1 MB default); never lowers one. A topic another
    client has just created may not be described yet (UNKNOWN_TOPIC_OR_PART): that is waited for up to the
    timeout. Blocks. Raises TransportError, or KafkaRefused when the broker refuses (no ALTER_CONFIGS right)."""
    admin = admin or AdminClient(settings.common())
    wanted = settings.max_message_bytes
    for name in topics:
        if _message_limit(admin, settings, name) >= wanted:
            continue
        entry = ConfigEntry("max.message.bytes", str(wanted), incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[entry])
        try:
            next(iter(admin.incremental_alter_configs([resource]).values())).result(timeout=settings.timeout_s)
        except TimeoutError as exc:
            raise _unreachable(settings, f"raise max.message.bytes of topic {name}", exc) from exc
        except KafkaException as exc:
            if not (exc.args and exc.args[0].code() in _REFUSALS):
                raise _unreachable(settings, f"raise max.message.bytes of topic {name}", exc) from exc
            raise KafkaRefused(
                f"Kafka at {settings.bootstrap_servers} refuses to raise max.message.bytes of topic {name} to "
                f"{wanted} (max_message_bytes): {exc}",
                hint=f"grant ALTER_CONFIGS on the topic, or run: kafka-configs --alter --entity-type topics "
                f"--entity-name {name} --add-config max.message.bytes={wanted}",
            ) from exc


def _message_limit(admin: AdminClient, settings: KafkaSettings, name: str) -> int:
    """The topic's ``max.message.bytes`` (0 when it shows none), waiting while the broker does not know
    the topic yet. Raises TransportError."""
    deadline = time.monotonic() + settings.timeout_s
    while True:
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        future = admin.describe_configs([resource], request_timeout=settings.timeout_s)[resource]
        try:
            entries = future.result(timeout=settings.timeout_s)
        except TimeoutError as exc:
            raise _unreachable(settings, f"describe the configuration of topic {name}", exc) from exc
        except KafkaException as exc:
            unknown = bool(exc.args) and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            if not unknown or time.monotonic() > deadline:
                raise _unreachable(settings, f"describe the configuration of topic {name}", exc) from exc
            time.sleep(0.1)
            continue
        entry = entries.get("max.message.bytes")
        return 0 if entry is None or entry.value is None else int(entry.value)


@dataclass(frozen=True)
class EnsuredTopics:
    """What ``ensure_topics`` found and did."""

    brokers: int  # live brokers in the cluster's metadata
    #: Of the topics it created, or that it would create now (None: the cluster is short of the
    #: brokers an explicit replication factor needs, and nothing was to be created).
    replication: Replication | None
    created: tuple[str, ...]
    #: Existing topics with fewer replicas than ``replication.factor`` (topic -> replicas): kept as
    #: they are, for the caller to report.
    fewer_replicas: dict[str, int] = field(default_factory=dict)


def ensure_topics(
    settings: KafkaSettings, wanted: Mapping[str, int], config: Mapping[str, str] | None = None
) -> EnsuredTopics:
    """Create each absent topic of ``wanted`` (name -> partitions) with ``config``, replicated as
    ``settings.replication`` decides for the cluster's live brokers, ``min.insync.replicas`` set on
    the topic and the size limit of ``settings.topic_config()``. Existing topics keep their replicas
    (reported when fewer than that) and get their size limit raised if lower. Blocks. Raises
    TransportError (unreachable), KafkaRefused, or ConfigError (a topic to create with a replication
    the cluster cannot give now)."""
    admin = AdminClient(settings.common())  # held in a variable: a collected client cancels its futures
    try:
        meta = admin.list_topics(timeout=settings.timeout_s)
    except KafkaException as exc:
        raise _unreachable(settings, "list topics", exc) from exc
    brokers, missing = len(meta.brokers), [name for name in wanted if name not in meta.topics]
    try:
        replication = settings.replication(brokers)
    except ConfigError:
        if missing:
            raise
        # Nothing to create: fewer brokers up than an explicit replication factor is an outage the
        # existing replicas ride out (their min.insync.replicas decides), not a reason to stop.
        ensure_message_limit(settings, list(wanted), admin)
        return EnsuredTopics(brokers, None, ())
    if missing:
        topic_config = {**settings.topic_config(), **(config or {}), "min.insync.replicas": str(replication.min_insync)}
        new = [NewTopic(n, num_partitions=wanted[n], replication_factor=replication.factor, config=topic_config)
               for n in missing]  # fmt: skip
        futures = admin.create_topics(new, operation_timeout=settings.timeout_s)
        raced = [
            n for n in missing if not _await(settings, f"create topic {n}", futures[n], KafkaError.TOPIC_ALREADY_EXISTS)
        ]
    else:
        raced = []
    existing = [name for name in wanted if name in meta.topics] + raced
    replicas = _replicas(admin, settings, existing)
    fewer = {name: n for name, n in replicas.items() if n < replication.factor}
    # Topics made before (by an older version with the broker's 1 MB default, or by hand): their size
    # limit raised, never lowered.
    ensure_message_limit(settings, existing, admin)
    return EnsuredTopics(brokers, replication, tuple(n for n in missing if n not in raced), fewer)


def _replicas(admin: AdminClient, settings: KafkaSettings, names: list[str]) -> dict[str, int]:
    """The fewest replicas of any partition of each topic of ``names``. A topic just created (here, or
    by another client a moment ago) may not show in a broker's metadata yet, or show without its
    partitions: that is waited for, up to the timeout, rather than taken as "nothing to report".
    Raises TransportError."""
    deadline = time.monotonic() + settings.timeout_s
    while True:
        try:
            topics = admin.list_topics(timeout=settings.timeout_s).topics
        except KafkaException as exc:
            raise _unreachable(settings, "list topics", exc) from exc
        settled = {n: topics[n] for n in names if n in topics and topics[n].partitions and topics[n].error is None}
        if len(settled) == len(names) or time.monotonic() > deadline:
            return {n: min(len(p.replicas) for p in t.partitions.values()) for n, t in settled.items()}
        time.sleep(0.1)


def create_topic(settings: KafkaSettings, name: str, partitions: int = 1) -> None:
    """Create ``name`` (replicated as ``ensure_topics`` does); an existing topic is fine. Blocks.
    Raises TransportError or ConfigError."""
    ensure_topics(settings, {name: partitions})


def delete_topic(settings: KafkaSettings, name: str) -> None:
    """Delete ``name``; a missing topic is fine. Blocks. Raises TransportError."""
    admin = AdminClient(settings.common())  # held in a variable: a collected client cancels its futures
    futures = admin.delete_topics([name], operation_timeout=settings.timeout_s)
    _await(settings, f"delete topic {name}", futures[name], KafkaError.UNKNOWN_TOPIC_OR_PART)


def publish(settings: KafkaSettings, topic: str, messages: Iterable[tuple[bytes, bytes]]) -> int:
    """Send (key, value) pairs and wait until the broker acknowledged all. Returns how many.

    Raises TransportError if any delivery failed or the flush timed out.
    """
    producer = Producer(settings.producer())
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    count = 0
    for key, value in messages:
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        producer.poll(0)
        count += 1
    pending = producer.flush(settings.timeout_s)
    if pending or errors:
        cause = errors[0] if errors else f"{pending} message(s) still unacknowledged"
        raise _unreachable(settings, f"acknowledge delivery to {topic}", cause)
    return count


def read(settings: KafkaSettings, topic: str, group_id: str, expected: int) -> list[Message]:
    """Read ``expected`` messages from the start of ``topic`` and commit their offsets. Blocks up to
    the timeout; returns what arrived (fewer means the timeout ran out). Raises TransportError."""
    consumer = Consumer(settings.consumer(group_id))
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + settings.timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                raise _unreachable(settings, f"deliver from {topic}", err)
            got.append(msg)
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got
