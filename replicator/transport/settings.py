"""Kafka client settings: a frozen, validated object mapped onto librdkafka's dotted names."""

from __future__ import annotations

import os
from dataclasses import dataclass

from replicator.errors import ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

ClientConfig = dict[str, str | int | float | bool]  # librdkafka properties, by their dotted names


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    client_id: str = "replicator"
    # How long a client call may wait on the broker before it is reported unreachable.
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ConfigError("Kafka bootstrap servers are empty", hint="e.g. --kafka 127.0.0.1:9092")
        for server in self.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(
                    f"Kafka bootstrap server {server!r} is not host:port",
                    hint="e.g. 127.0.0.1:9092; separate several with commas",
                )
        if self.timeout_s <= 0:
            raise ConfigError("Kafka timeout must be positive", hint="e.g. 10 seconds")

    @classmethod
    def from_env(cls) -> KafkaSettings:
        """From REPLICATOR_KAFKA_BOOTSTRAP (default: the local stack's broker)."""
        return cls(bootstrap_servers=os.environ.get("REPLICATOR_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP))

    def common(self) -> ClientConfig:
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "socket.connection.setup.timeout.ms": int(self.timeout_s * 1000),
        }

    def producer(self) -> ClientConfig:
        # Idempotence (and so acks=all) keeps per-partition order and no duplicates across retries:
        # the sinks rely on per-key order.
        return {**self.common(), "enable.idempotence": True, "acks": "all", "linger.ms": 5}

    def consumer(self, group_id: str) -> ClientConfig:
        # Offsets are committed by the sink only after its applier flushed (never auto-committed).
        return {
            **self.common(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
