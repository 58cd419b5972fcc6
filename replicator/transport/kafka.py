"""Thin helpers over confluent-kafka: create a topic, publish keyed bytes, read them back.

Every call blocks up to ``KafkaSettings.timeout_s`` and raises TransportError naming the broker when
it cannot be reached, instead of librdkafka's endless silent retries.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import Future

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from replicator.errors import Fatal, Retryable
from replicator.transport.settings import KafkaSettings

#: Refusals that waiting does not fix: an operator must grant a right or change a broker policy.
_REFUSALS = frozenset({
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.POLICY_VIOLATION, KafkaError.INVALID_CONFIG,
})  # fmt: skip


class TransportError(Retryable):
    """Kafka is unreachable or refused a request."""


class KafkaRefused(Fatal):
    """The broker refuses a request for good (rights, policy): an operator must act."""


def _unreachable(settings: KafkaSettings, what: str, exc: object) -> TransportError:
    return TransportError(
        f"Kafka at {settings.bootstrap_servers} did not {what}: {exc}",
        hint="is the broker up? `replicator stack status` for the local stack, or check REPLICATOR_KAFKA_BOOTSTRAP",
    )


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


def create_topic(settings: KafkaSettings, name: str, partitions: int = 1) -> None:
    """Create ``name`` (single replica, the size limit of ``settings.topic_config()``); an existing
    topic is fine and gets its size limit raised if lower. Blocks. Raises TransportError."""
    admin = AdminClient(settings.common())  # held in a variable: a collected client cancels its futures
    new = NewTopic(name, num_partitions=partitions, replication_factor=1, config=settings.topic_config())
    futures = admin.create_topics([new])
    if not _await(settings, f"create topic {name}", futures[name], KafkaError.TOPIC_ALREADY_EXISTS):
        ensure_message_limit(settings, [name])  # made before (maybe by an older version, with 1 MB)


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
