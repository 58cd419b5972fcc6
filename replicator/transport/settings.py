"""Kafka client settings: a frozen, validated object mapped onto librdkafka's dotted names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from replicator.errors import ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
#: Environment variables of the topic replication settings (read by every command that creates topics).
ENV_REPLICATION_FACTOR = "REPLICATOR_KAFKA_REPLICATION_FACTOR"
ENV_MIN_INSYNC_REPLICAS = "REPLICATOR_KAFKA_MIN_INSYNC_REPLICAS"
#: Replicas per partition when not set: with three, any one broker may be lost while writes go on
#: (two copies still in sync); more only cost disk and network.
MAX_DEFAULT_REPLICATION: Final = 3
#: In-sync copies an acknowledged write must have when not set: two, so that no single broker (its
#: disk, or the unflushed tail of its log lost with its machine) holds the only copy of a commit.
MAX_DEFAULT_MIN_INSYNC: Final = 2

ClientConfig = dict[str, str | int | float | bool]  # librdkafka properties, by their dotted names


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    client_id: str = "replicator"
    # How long a client call may wait on the broker before it is reported unreachable.
    timeout_s: float = 10.0
    # Of the topics this client creates (existing topics keep theirs). None: decided from the
    # cluster's broker count when the topic is created (``replication_for``).
    replication_factor: int | None = None
    min_insync_replicas: int | None = None

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
        for name, value in (("replication factor", self.replication_factor),
                            ("min.insync.replicas", self.min_insync_replicas)):  # fmt: skip
            if value is not None and not 1 <= value <= 32:
                raise ConfigError(f"{name} {value} is out of range", hint="use 1 to 32, or unset: from the brokers")
        rf, isr = self.replication_factor, self.min_insync_replicas
        if rf is not None and isr is not None and isr > rf:
            raise ConfigError(
                f"min.insync.replicas {isr} exceeds the replication factor {rf}: no write could ever be acknowledged",
                hint=f"use min.insync.replicas <= {rf} (e.g. {min(MAX_DEFAULT_MIN_INSYNC, rf)})",
            )

    @classmethod
    def from_env(cls) -> KafkaSettings:
        """From REPLICATOR_KAFKA_BOOTSTRAP (default: the local stack's broker) and the replication
        variables (default: decided from the brokers). Raises ConfigError for a non-number."""
        return cls(
            bootstrap_servers=os.environ.get("REPLICATOR_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
            replication_factor=_env_int(ENV_REPLICATION_FACTOR),
            min_insync_replicas=_env_int(ENV_MIN_INSYNC_REPLICAS),
        )

    def replication(self, brokers: int) -> Replication:
        """The replication of a topic created now on a cluster of ``brokers`` live brokers: the
        explicit settings, else ``replication_for(brokers)``. Raises ConfigError when an explicit
        replication factor needs more brokers than the cluster has."""
        if self.replication_factor is not None and self.replication_factor > brokers:
            raise ConfigError(
                f"replication factor {self.replication_factor} needs {self.replication_factor} brokers; Kafka at "
                f"{self.bootstrap_servers} has {brokers} up",
                hint=f"start the missing brokers, or set {ENV_REPLICATION_FACTOR} (--replication-factor) "
                f"to at most {brokers}",
            )
        auto = replication_for(brokers if self.replication_factor is None else self.replication_factor)
        chosen = Replication(
            auto.factor, auto.min_insync if self.min_insync_replicas is None else self.min_insync_replicas
        )
        if chosen.min_insync > chosen.factor:
            raise ConfigError(
                f"min.insync.replicas {chosen.min_insync} exceeds the replication factor {chosen.factor} decided "
                f"from the {brokers} broker(s) of Kafka at {self.bootstrap_servers}: no write could be acknowledged",
                hint=f"set {ENV_MIN_INSYNC_REPLICAS} (--min-insync-replicas) to at most {chosen.factor}, or unset it",
            )
        return chosen

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


@dataclass(frozen=True)
class Replication:
    """How a topic is replicated: ``factor`` copies of each partition, and a write acknowledged
    (acks=all) only once ``min_insync`` of them have it."""

    factor: int
    min_insync: int


def replication_for(brokers: int) -> Replication:
    """The default on ``brokers`` brokers: factor min(3, brokers), min.insync.replicas min(2, factor).

    One broker gives 1/1 (the development stack: no copy to wait for); two give 2/2 (every
    acknowledged write is on both, and a broker down stops publishing: the source's changelog holds
    the changes meanwhile, which is cheaper than a write that lives on one disk only); three or more
    give 3/2 (any one broker may fail without stopping anything or losing an acknowledged write).
    The local stack's broker configuration uses the same numbers for Kafka's internal topics."""
    if brokers < 1:
        raise ValueError(f"a cluster has at least one broker, got {brokers}")
    factor = min(MAX_DEFAULT_REPLICATION, brokers)
    return Replication(factor, min(MAX_DEFAULT_MIN_INSYNC, factor))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number", hint="e.g. 3, or unset it") from None
