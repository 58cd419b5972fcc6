"""How the sink runner reaches Kafka: the factories of its clients (``replicator.transport.clients``
has the protocols they satisfy). The defaults are confluent_kafka's; a unit test passes the in-memory broker's
(``replicator.testing.broker``), whose contract tests keep it true to the real one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, Producer

from replicator.transport.clients import ConsumerFactory, KafkaConsumer, ProducerFactory, RebalanceCallback
from replicator.transport.kafka import create_topic
from replicator.transport.settings import KafkaSettings

__all__ = ["KafkaConsumer", "RebalanceCallback", "SinkClients"]


@dataclass(frozen=True)
class SinkClients:
    """Factories of the runner's Kafka clients: a consumer and a producer from their configuration,
    and the creation of a topic (an existing one is fine)."""

    consumer: ConsumerFactory = Consumer
    producer: ProducerFactory = Producer
    create_topic: Callable[[KafkaSettings, str], None] = create_topic
