"""How the source daemon reaches Kafka: its topics, its transactional publisher and its committed
position, as factories. The defaults are the real ones (``replicator.source.kafka``); a unit test
passes ones built on the in-memory broker (``replicator.testing.broker``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from replicator.source.kafka import SourcePosition, TransactionalPublisher, ensure_topics, read_position
from replicator.transport.settings import KafkaSettings

#: (settings, transactional id, transaction timeout in seconds, reframe) -> an initialised publisher.
PublisherFactory = Callable[[KafkaSettings, str, float, Callable[[str, bytes], bytes] | None], TransactionalPublisher]


@dataclass(frozen=True)
class SourceClients:
    """``ensure_topics(settings, prefix, partitions) -> table -> partition count``; ``publisher``;
    ``read_position(settings, prefix, store_id)``. Each raises TransportError when Kafka does not answer."""

    ensure_topics: Callable[[KafkaSettings, str, int], dict[str, int]] = ensure_topics
    publisher: PublisherFactory = TransactionalPublisher
    read_position: Callable[[KafkaSettings, str, str], SourcePosition | None] = read_position
