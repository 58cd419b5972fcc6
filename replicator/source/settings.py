"""Settings of ``replicator source run``: one frozen, validated object.

Precedence, highest first: command-line flags, environment variables, the config file (``--config``,
YAML or TOML; keys at top level or under a ``source:`` section), defaults. Raises ConfigError naming
the setting and where it came from.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import yaml

from replicator.errors import ConfigError
from replicator.observe.endpoint import DEFAULT_HOST
from replicator.transport.settings import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_MAX_MESSAGE_BYTES,
    ENV_MIN_INSYNC_REPLICAS,
    ENV_REPLICATION_FACTOR,
    MAX_MESSAGE_BYTES_ENV,
    KafkaSettings,
    check_max_message_bytes,
    parse_size,
)
from replicator.transport.topics import DEFAULT_PREFIX

#: Environment variable of each setting (REPLICATOR_KAFKA_BOOTSTRAP is shared with every stage).
ENV: Final = {
    "db": "REPLICATOR_SOURCE_DB",
    "bootstrap_servers": "REPLICATOR_KAFKA_BOOTSTRAP",
    "topic_prefix": "REPLICATOR_TOPIC_PREFIX",
    "partitions": "REPLICATOR_SOURCE_PARTITIONS",
    "metrics_port": "REPLICATOR_SOURCE_METRICS_PORT",
    "metrics_host": "REPLICATOR_SOURCE_METRICS_HOST",
    "schema_registry": "REPLICATOR_SCHEMA_REGISTRY",
    "heartbeat_interval_s": "REPLICATOR_HEARTBEAT_INTERVAL",
    "max_message_bytes": MAX_MESSAGE_BYTES_ENV,
    "replication_factor": ENV_REPLICATION_FACTOR,
    "min_insync_replicas": ENV_MIN_INSYNC_REPLICAS,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_PREFIX = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def parse_duration(value: object, name: str) -> float:
    """'1s', '250ms', '2m', 1.5 -> seconds. Raises ConfigError."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ConfigError(f"{name} = {value!r} is not a duration", hint="e.g. 1s, 250ms, 2m or a number of seconds")
        unit = match.group(2) or "s"
        seconds = float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
    if seconds <= 0:
        raise ConfigError(f"{name} = {value!r} must be positive", hint="e.g. 1s")
    return seconds


@dataclass(frozen=True)
class SourceSettings:
    db: Path
    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    topic_prefix: str = DEFAULT_PREFIX
    partitions: int = 3  # for topics the source creates; existing topics keep theirs
    metrics_port: int | None = None
    metrics_host: str = DEFAULT_HOST  # the endpoint answers on loopback unless told otherwise
    schema_registry: str | None = None  # Confluent framing via this registry; None: single-object encoding
    heartbeat_interval_s: float = 1.0  # while idle
    heartbeat_min_gap_s: float = 0.1  # after a drained transaction, at most one per this
    heartbeat_quiet_gap_s: float = 0.02  # ... but once a poll finds nothing new, one after this
    batch_rows: int = 500  # changelog rows per Kafka transaction (fewer once they hold max_message_bytes)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # the pipeline's size setting (transport/settings.py)
    snapshot_chunk_rows: int = 2000  # snapshot rows per Kafka transaction
    poll_min_s: float = 0.01  # wait between polls while busy ...
    poll_max_s: float = 0.2  # ... growing to this while idle
    delete_busy_timeout_ms: int = 20  # never wait longer for the store's write lock
    kafka_timeout_s: float = 10.0
    retry_max_s: float = 5.0  # cap of the exponential backoff while Kafka is unreachable
    transaction_timeout_s: float = 30.0
    # Of the topics the source creates; None: decided from the cluster's brokers (KafkaSettings.replication).
    replication_factor: int | None = None
    min_insync_replicas: int | None = None

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.topic_prefix):
            raise ConfigError(
                f"topic prefix {self.topic_prefix!r} is not a valid Kafka topic name part",
                hint="use letters, digits, '.', '_' and '-', e.g. caxton.memory",
            )
        if not 1 <= self.partitions <= 1000:
            raise ConfigError(f"partitions = {self.partitions} is out of range", hint="use 1 to 1000; default 3")
        if self.schema_registry is not None and not self.schema_registry.startswith(("http://", "https://")):
            raise ConfigError(
                f"schema_registry = {self.schema_registry!r} is not an http(s) URL", hint="e.g. http://localhost:8081"
            )
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics port {self.metrics_port} is not a TCP port", hint="use 1-65535 (0: any)")
        if not self.metrics_host.strip():
            raise ConfigError("metrics_host is empty", hint="e.g. 127.0.0.1 (0.0.0.0: every interface)")
        for name in ("batch_rows", "snapshot_chunk_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1", hint="e.g. 500")
        check_max_message_bytes(self.max_message_bytes)
        if self.poll_min_s > self.poll_max_s:
            raise ConfigError("poll_min_s exceeds poll_max_s", hint="e.g. 0.01 and 0.2")
        self.kafka()  # validates the servers and the replication settings

    def kafka(self) -> KafkaSettings:
        return KafkaSettings(
            self.bootstrap_servers,
            client_id="replicator-source",
            timeout_s=self.kafka_timeout_s,
            max_message_bytes=self.max_message_bytes,
            replication_factor=self.replication_factor,
            min_insync_replicas=self.min_insync_replicas,
        )

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any],
        *,
        config_file: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> SourceSettings:
        """Merge defaults < config file < environment < flags (None flags are unset). Raises ConfigError."""
        env = os.environ if env is None else env
        merged: dict[str, Any] = {}
        if config_file is not None:
            merged.update(_read_config(config_file))
        for name, var in ENV.items():
            if env.get(var):
                merged[name] = env[var]
        merged.update({k: v for k, v in flags.items() if v is not None})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(merged) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown source setting(s): {', '.join(unknown)}",
                hint=f"known settings: {', '.join(sorted(known))}",
            )
        if "db" not in merged:
            raise ConfigError("no store given", hint=f"pass --db PATH (or set {ENV['db']}, or db: in --config)")
        return cls(**{name: _coerce(name, value) for name, value in merged.items()})


def _coerce(name: str, value: Any) -> Any:  # noqa: ANN401 - values come from YAML/TOML/env
    try:
        if name == "db":
            return Path(value)
        if name.endswith("_s"):
            return parse_duration(value, name)
        if name == "max_message_bytes":
            return parse_size(value, name)
        if name in {"partitions", "batch_rows", "snapshot_chunk_rows", "delete_busy_timeout_ms", "metrics_port",
                    "replication_factor", "min_insync_replicas"}:  # fmt: skip
            return int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} = {value!r} is not a number", hint="e.g. 3") from exc
    return str(value)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"no config file at {path}", hint="pass an existing YAML or TOML file to --config")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} does not parse: {exc}", hint="fix the file's syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a mapping of settings", hint="e.g. source: {topic_prefix: caxton.memory}")
    section = data.get("source", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'source' is not a mapping", hint="source: {bootstrap_servers: 127.0.0.1:9092}")
    return {str(k).replace("-", "_"): v for k, v in section.items()}
