"""The dead-letter topic ``<prefix>.dlq``: the original key and value, plus headers saying why."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, Message, Producer

from replicator.sinks.batch import Event
from replicator.transport.clients import ProducerFactory
from replicator.transport.kafka import TransportError
from replicator.transport.settings import KafkaSettings

HEADERS = ("dlq.reason", "dlq.sink", "dlq.topic", "dlq.partition", "dlq.offset", "dlq.ts_ms")


class DeadLetters:
    """Sends poison events to the DLQ and waits for the broker's acknowledgement (the event's offset
    advances only after, so nothing is lost). At least once: a crash between the send and the
    destination's position write sends it again on restart."""

    def __init__(self, settings: KafkaSettings, topic: str, sink: str, producer: ProducerFactory = Producer) -> None:
        self.settings = settings
        self.topic = topic
        self.sink = sink
        self._producer = producer(settings.producer())

    def send(self, event: Event, reason: str) -> None:
        """Blocks until acknowledged. Raises TransportError if the broker does not take it."""
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        headers: list[tuple[str, str | bytes | None]] = [
            ("dlq.reason", reason.encode()),
            ("dlq.sink", self.sink.encode()),
            ("dlq.topic", event.topic.encode()),
            ("dlq.partition", str(event.partition).encode()),
            ("dlq.offset", str(event.offset).encode()),
            ("dlq.ts_ms", str(int(time.time() * 1000)).encode()),
        ]
        self._producer.produce(
            self.topic, key=event.raw_key, value=event.raw_value, headers=headers, on_delivery=on_delivery
        )
        pending = self._producer.flush(self.settings.timeout_s)
        if pending or errors:
            raise TransportError(
                f"Kafka at {self.settings.bootstrap_servers} did not take the dead letter for "
                f"{event.topic}/{event.partition}@{event.offset}: {errors[0] if errors else 'timed out'}",
                hint="the sink retries; check the broker and that the DLQ topic can be created",
            )

    def close(self) -> None:
        self._producer.flush(self.settings.timeout_s)
