"""Settings of the sink runner (shared by every sink): frozen and validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from replicator.errors import ConfigError
from replicator.observe.endpoint import DEFAULT_HOST
from replicator.transport.settings import ClientConfig, KafkaSettings
from replicator.transport.topics import DEFAULT_PREFIX, change_topics, dlq_topic

#: While stopped on a fatal error, how often the sink re-checks whether the cause is gone. Long enough
#: not to trip a server's failed-login limit (Neo4j locks a user after 3 failures), short enough that
#: a fixed password or a restored collection is picked up within half a minute.
DEFAULT_RECHECK_S = 30.0
#: The HTTP endpoint answers on the loopback interface only unless told otherwise: its /position
#: and /points tell anyone who asks what the store holds.
DEFAULT_METRICS_HOST = DEFAULT_HOST


@dataclass(frozen=True)
class SinkRunnerSettings:
    """How a sink consumes. ``sink`` names its stored position (default: the group). Raises
    ConfigError when a value is out of range."""

    group: str
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topic_prefix: str = DEFAULT_PREFIX
    tables: tuple[str, ...] = ("entities", "relations")
    sink: str = ""
    batch_max_events: int = 1000
    batch_max_age_ms: int = 200
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0
    recheck_s: float = DEFAULT_RECHECK_S
    # How soon the group notices a dead instance (kill -9) and hands its partitions on.
    session_timeout_ms: int = 10_000
    metrics_port: int | None = None  # None: no HTTP endpoint
    metrics_host: str = DEFAULT_METRICS_HOST
    schema_registry: str | None = None  # decode Confluent-framed values through this registry

    def __post_init__(self) -> None:
        if not self.group.strip():
            raise ConfigError("the sink's consumer group is empty", hint="e.g. --group replicator-neo4j")
        if not self.topic_prefix.strip() or self.topic_prefix.endswith("."):
            raise ConfigError(f"topic prefix {self.topic_prefix!r} is invalid", hint="e.g. caxton.memory")
        if not self.tables:
            raise ConfigError("the sink reads no table's topic", hint="e.g. entities and relations")
        if self.batch_max_events < 1 or self.batch_max_age_ms < 1:
            raise ConfigError("batch bounds must be positive", hint="e.g. --batch-size 1000 --batch-age-ms 200")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ConfigError("backoff must satisfy 0 < initial <= max", hint="e.g. 0.2 s and 5 s")
        if not self.recheck_s > 0:
            raise ConfigError(f"re-check interval {self.recheck_s} s is not positive", hint="e.g. --recheck-s 30")
        if self.session_timeout_ms < 6000:
            raise ConfigError("session timeout below the broker's 6000 ms minimum", hint="e.g. 10000")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics port {self.metrics_port} is not a TCP port", hint="e.g. 9464; 0 = any")
        if not self.metrics_host.strip():
            raise ConfigError("the metrics host is empty", hint="e.g. --metrics-host 127.0.0.1 (0.0.0.0: all)")
        if not self.sink:
            object.__setattr__(self, "sink", self.group)

    @property
    def topics(self) -> list[str]:
        return change_topics(self.topic_prefix, self.tables)

    @property
    def dlq_topic(self) -> str:
        return dlq_topic(self.topic_prefix)

    def consumer(self) -> ClientConfig:
        return {
            **self.kafka.consumer(self.group),
            # Only committed transactions: an aborted source transaction never reaches a destination.
            "isolation.level": "read_committed",
            "enable.auto.offset.store": False,
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": max(1000, self.session_timeout_ms // 5),
        }
