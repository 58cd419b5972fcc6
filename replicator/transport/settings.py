"""Kafka client settings: a frozen, validated object mapped onto librdkafka's dotted names.

``max_message_bytes`` is THE size setting of the pipeline (docs/source.md, "Size limits"): Kafka's
record limit, given unchanged to the brokers (``message.max.bytes`` in the local stack and
docker/compose.yaml), the topics (``max.message.bytes``, raised on existing ones), the producers
(``message.max.bytes``) and the consumers (fetch sizes), so they never disagree. The source publishes
change events up to ``event_limit`` (the setting minus ``FRAMING_BYTES``: the record batch around one
record, and the headers the dead-letter topic adds) and parks a larger row, named.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Final, TypedDict

from replicator.errors import ConfigError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
MIB: Final = 1024 * 1024
#: Default: an update of an entity with the store contract's 10 MiB of observations carries them twice
#: (before and after image), and its embedding event carries the entity text twice too; 32 MiB leaves
#: room for names, metadata and the envelope.
DEFAULT_MAX_MESSAGE_BYTES: Final = 32 * MIB
MAX_MESSAGE_BYTES_ENV: Final = "REPLICATOR_MAX_MESSAGE_BYTES"
FRAMING_BYTES: Final = 64 * 1024
#: Bounds of the setting. A producer request may hold two records of the limit, and a broker refuses
#: requests over its ``socket.request.max.bytes`` (default 100 MiB): 48 MiB keeps every default valid.
MIN_MAX_MESSAGE_BYTES: Final = 4 * FRAMING_BYTES
MAX_MAX_MESSAGE_BYTES: Final = 48 * MIB
_LIBRDKAFKA_FETCH_MAX: Final = 50 * MIB  # librdkafka's default fetch.max.bytes
_LIBRDKAFKA_BATCH_SIZE: Final = 1_000_000  # librdkafka's default batch.size
_SIZE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)
_UNITS: Final = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": MIB, "mb": 1000**2, "mib": MIB,
                 "g": 1024 * MIB, "gb": 1000**3, "gib": 1024 * MIB}  # fmt: skip


def parse_size(value: object, name: str = "max_message_bytes") -> int:
    """``33554432``, ``"32MiB"``, ``"32m"``, ``"10MB"`` -> bytes. Raises ConfigError naming ``name``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if match is None:
        raise ConfigError(f"{name} = {value!r} is not a size", hint="e.g. 33554432, 32MiB or 64MB")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def check_max_message_bytes(value: int) -> int:
    """The setting, validated. Raises ConfigError."""
    if not MIN_MAX_MESSAGE_BYTES <= value <= MAX_MAX_MESSAGE_BYTES:
        raise ConfigError(
            f"max_message_bytes = {value} is out of range",
            hint=f"use {MIN_MAX_MESSAGE_BYTES} (256KiB) to {MAX_MAX_MESSAGE_BYTES} (48MiB); "
            f"default {DEFAULT_MAX_MESSAGE_BYTES} (32MiB)",
        )
    return value


def max_message_bytes_from_env(env: dict[str, str] | None = None) -> int:
    """REPLICATOR_MAX_MESSAGE_BYTES, or the default. Raises ConfigError."""
    raw = (os.environ if env is None else env).get(MAX_MESSAGE_BYTES_ENV)
    return check_max_message_bytes(parse_size(raw, MAX_MESSAGE_BYTES_ENV) if raw else DEFAULT_MAX_MESSAGE_BYTES)


def broker_limits(max_message_bytes: int) -> dict[str, str]:
    """A broker's size settings for the setting (the local stack's server.properties; docker/compose.yaml
    sets the same two from the same variable)."""
    return {"message.max.bytes": str(max_message_bytes), "replica.fetch.max.bytes": str(max_message_bytes)}


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
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # the pipeline's one size setting (module doc)
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
        check_max_message_bytes(self.max_message_bytes)
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
        """From REPLICATOR_KAFKA_BOOTSTRAP (default: the local stack's broker), REPLICATOR_MAX_MESSAGE_BYTES
        (default 32MiB) and the replication variables (default: decided from the brokers). Raises
        ConfigError for a value that is not a number or size."""
        return cls(
            bootstrap_servers=os.environ.get("REPLICATOR_KAFKA_BOOTSTRAP", DEFAULT_BOOTSTRAP),
            max_message_bytes=max_message_bytes_from_env(),
            **replication_from_env(),
        )

    @property
    def event_limit(self) -> int:
        """The largest change event (key + value + headers) the source publishes; larger rows are parked."""
        return self.max_message_bytes - FRAMING_BYTES

    def topic_config(self) -> dict[str, str]:
        """Per-topic settings every topic of the pipeline is created with (and raised to)."""
        return {"max.message.bytes": str(self.max_message_bytes)}

    def fetch_limits(self) -> ClientConfig:
        """A consumer's fetch sizes: one whole record of the largest size fits in every response."""
        fetch_max = max(_LIBRDKAFKA_FETCH_MAX, self.max_message_bytes)
        return {
            "fetch.max.bytes": fetch_max,
            "max.partition.fetch.bytes": self.max_message_bytes,
            "receive.message.max.bytes": fetch_max + FRAMING_BYTES,
        }

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
        return {
            **self.common(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.max.bytes": self.max_message_bytes,
            # A batch never outgrows the topics' limit (one record larger than batch.size goes alone).
            "batch.size": min(_LIBRDKAFKA_BATCH_SIZE, self.event_limit),
        }

    def consumer(self, group_id: str) -> ClientConfig:
        # Offsets are committed by the sink only after its applier flushed (never auto-committed).
        return {
            **self.common(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **self.fetch_limits(),
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


class ReplicationEnv(TypedDict):
    replication_factor: int | None
    min_insync_replicas: int | None


def replication_from_env() -> ReplicationEnv:
    """``replication_factor`` and ``min_insync_replicas`` from their variables (None: unset, decided
    from the brokers), as keyword arguments of KafkaSettings. Every client that creates topics reads
    them. Raises ConfigError for a non-number."""
    return ReplicationEnv(
        replication_factor=_env_int(ENV_REPLICATION_FACTOR), min_insync_replicas=_env_int(ENV_MIN_INSYNC_REPLICAS)
    )


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number", hint="e.g. 3, or unset it") from None
