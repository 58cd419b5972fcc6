"""How the sink runner reaches Kafka: the few consumer methods it calls (a protocol) and the factories
of its clients. The defaults are confluent_kafka's; a unit test passes the in-memory broker's
(``replicator.testing.broker``), whose contract tests keep it true to the real one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from confluent_kafka import Consumer, Producer, TopicPartition

from replicator.transport.kafka import create_topic
from replicator.transport.settings import ClientConfig, KafkaSettings

RebalanceCallback = Callable[[Any, list[TopicPartition]], None]


class KafkaConsumer(Protocol):
    """What the runner asks of a confluent_kafka Consumer (same names and arguments)."""

    def subscribe(
        self, topics: list[str], on_assign: RebalanceCallback, on_revoke: RebalanceCallback, on_lost: RebalanceCallback
    ) -> None: ...

    def unsubscribe(self) -> None: ...

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def consume(self, num_messages: int, timeout: float) -> list[Any]: ...

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...

    def seek(self, partition: TopicPartition) -> None: ...

    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[True] = True) -> None: ...

    def get_watermark_offsets(self, partition: TopicPartition, *, cached: bool = False) -> tuple[int, int]: ...

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...  # noqa: ANN401 - metadata

    def close(self) -> None: ...


@dataclass(frozen=True)
class SinkClients:
    """Factories of the runner's Kafka clients: a consumer and a producer from their configuration,
    and the creation of a topic (an existing one is fine)."""

    consumer: Callable[[ClientConfig], KafkaConsumer] = Consumer
    producer: Callable[[ClientConfig], Any] = Producer
    create_topic: Callable[[KafkaSettings, str], None] = create_topic
