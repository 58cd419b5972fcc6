"""The few methods of confluent_kafka's Consumer and Producer that the daemons call, as protocols (same
names and arguments). The real clients satisfy them, and so does the in-memory broker of the unit
tests (``replicator.testing.broker``), whose contract suite runs against both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from confluent_kafka import KafkaError, TopicPartition

RebalanceCallback = Callable[[Any, list[TopicPartition]], None]
DeliveryCallback = Callable[[KafkaError | None, Any], None]


class KafkaConsumer(Protocol):
    """A group member (the sink runner) or a reader of one partition (the source's position)."""

    def subscribe(
        self, topics: list[str], on_assign: RebalanceCallback, on_revoke: RebalanceCallback, on_lost: RebalanceCallback
    ) -> None: ...

    def unsubscribe(self) -> None: ...

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def consume(self, num_messages: int, timeout: float) -> list[Any]: ...

    def poll(self, timeout: float) -> Any: ...  # noqa: ANN401 - a Message or None

    def pause(self, partitions: list[TopicPartition]) -> None: ...

    def resume(self, partitions: list[TopicPartition]) -> None: ...

    def seek(self, partition: TopicPartition) -> None: ...

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]: ...

    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[True] = True) -> None: ...

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]: ...

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...  # noqa: ANN401 - metadata

    def close(self) -> None: ...


class KafkaProducer(Protocol):
    """A plain producer (the dead-letter topic) or a transactional one (the source)."""

    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, *, partition: int = -1,
        on_delivery: DeliveryCallback | None = None, headers: Any = None,  # noqa: ANN401 - librdkafka's forms
    ) -> None: ...  # fmt: skip

    def poll(self, timeout: float = -1) -> int: ...

    def flush(self, timeout: float = -1) -> int: ...

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None: ...

    def init_transactions(self, timeout: float = -1) -> None: ...

    def begin_transaction(self) -> None: ...

    def commit_transaction(self, timeout: float = -1) -> None: ...

    def abort_transaction(self, timeout: float = -1) -> None: ...

    def close(self) -> Any: ...  # noqa: ANN401 - bool in recent clients


ConsumerFactory = Callable[[dict[str, Any]], KafkaConsumer]
ProducerFactory = Callable[[dict[str, Any]], KafkaProducer]
