"""The change topics a sink reads, as Kafka has them: waited for while the source has not created them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from replicator.sinks.clients import KafkaConsumer
from replicator.sinks.runner_settings import SinkRunnerSettings
from replicator.transport.kafka import TransportError

log = logging.getLogger("replicator.sink")


class MissingTopic(TransportError):
    """A change topic does not exist (yet)."""


def partition_counts(consumer: KafkaConsumer, settings: SinkRunnerSettings) -> dict[str, int]:
    """Partitions per change topic. Raises MissingTopic, or TransportError when Kafka is unreachable."""
    meta = consumer.list_topics(timeout=settings.kafka.timeout_s)
    counts = {}
    for topic in settings.topics:
        found = meta.topics.get(topic)
        if found is None or found.error is not None:
            raise MissingTopic(
                f"topic {topic} does not exist on {settings.kafka.bootstrap_servers}",
                hint="start the source first (it creates the topics) or check --topic-prefix",
            )
        counts[topic] = len(found.partitions)
    return counts


def wait_for_topics(
    consumer: KafkaConsumer,
    settings: SinkRunnerSettings,
    stopping: Callable[[], bool],
    clock: Callable[[], float],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """Partition counts of the change topics, waiting (capped backoff, one log line per wait) while
    the source has not created them yet: a sink may start before its source, as a Kafka Connect sink
    may. Returns early (possibly empty) once ``stopping()``. Raises TransportError when Kafka itself is
    unreachable."""
    delay = settings.backoff_initial_s
    logged = False
    while True:
        try:
            return partition_counts(consumer, settings)
        except MissingTopic as exc:
            if not logged:
                log.warning("waiting for the change topics", extra={"error": str(exc).splitlines()[0]})
                logged = True
        deadline = clock() + delay
        while clock() < deadline:
            if stopping():
                return {}
            sleep(0.05)
        delay = min(delay * 2, settings.backoff_max_s)
