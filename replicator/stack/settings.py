"""Settings of the local stack: one frozen, validated object built from flags and environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from replicator.errors import ConfigError
from replicator.transport.settings import max_message_bytes_from_env

KAFKA_VERSION: Final = "4.4.0"
NEO4J_VERSION: Final = "5.26.30"
DEFAULT_NEO4J_PASSWORD: Final = "replicator-local"
# Neo4j refuses shorter passwords (dbms.security.auth_minimum_password_length defaults to 8).
_MIN_PASSWORD: Final = 8
# Each broker is a JVM of its own on this machine: a handful is all a laptop should run.
MAX_BROKERS: Final = 5


def default_cache_dir() -> Path:
    """Where resolved jars and the compiled Neo4j launcher are kept, shared by all checkouts."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "replicator" / "stack"


@dataclass(frozen=True)
class StackSettings:
    """Where the stack lives and how it listens. Raises ConfigError on construction when invalid."""

    root: Path = field(default_factory=lambda: Path(".stack"))
    cache: Path = field(default_factory=default_cache_dir)
    host: str = "127.0.0.1"
    #: Kafka nodes, each broker and KRaft controller in one JVM (a quorum of ``brokers`` voters).
    brokers: int = 1
    #: Client port of the first broker; broker N listens on ``kafka_port + N - 1``.
    kafka_port: int = 9092
    #: Controller port of the first node, the next ones follow it. 0: right after the client ports
    #: (9093 for one broker on 9092; 9095-9097 for three on 9092-9094).
    kafka_controller_port: int = 0
    bolt_port: int = 7687
    # Empty means authentication off. Passed to Neo4j in the environment, never on its command line.
    neo4j_password: str = DEFAULT_NEO4J_PASSWORD
    kafka_version: str = KAFKA_VERSION
    neo4j_version: str = NEO4J_VERSION
    kafka_heap_mb: int = 512
    neo4j_heap_mb: int = 1024
    neo4j_pagecache_mb: int = 256
    start_timeout_s: float = 180.0
    # The pipeline's size setting (REPLICATOR_MAX_MESSAGE_BYTES): the broker accepts what the clients send.
    max_message_bytes: int = field(default_factory=max_message_bytes_from_env)

    def __post_init__(self) -> None:
        if not 1 <= self.brokers <= MAX_BROKERS:
            raise ConfigError(f"--brokers {self.brokers} is out of range", hint=f"use 1 to {MAX_BROKERS}")
        if self.kafka_controller_port == 0:  # frozen: the derived default is set once, here
            object.__setattr__(self, "kafka_controller_port", self.kafka_port + self.brokers)
        ports = self.ports()
        for flag, port in ports.items():
            if not 1 <= port <= 65535:
                raise ConfigError(f"{flag} {port} is not a TCP port", hint="use a number from 1 to 65535")
        if len(set(ports.values())) != len(ports):
            raise ConfigError(
                f"ports must differ, got {', '.join(f'{k} {v}' for k, v in ports.items())}",
                hint="give each broker a client and a controller port, and Neo4j's Bolt one, all different",
            )
        if self.neo4j_password and len(self.neo4j_password) < _MIN_PASSWORD:
            raise ConfigError(
                f"Neo4j password is {len(self.neo4j_password)} characters; Neo4j requires at least {_MIN_PASSWORD}",
                hint="choose a longer --neo4j-password, or an empty one to turn authentication off",
            )
        for name in ("kafka_heap_mb", "neo4j_heap_mb", "neo4j_pagecache_mb"):
            if getattr(self, name) < 64:
                raise ConfigError(f"{name} = {getattr(self, name)} MiB is too small", hint="use 64 MiB or more")
        if self.start_timeout_s <= 0:
            raise ConfigError("the start timeout must be positive", hint="e.g. --timeout 180")

    def kafka_node_ports(self, node: int) -> dict[str, int]:
        """The client and controller port of Kafka node ``node`` (1-based), keyed by the flag that sets them."""
        step = node - 1
        if step == 0:
            return {"--kafka-port": self.kafka_port, "--kafka-controller-port": self.kafka_controller_port}
        return {
            f"--kafka-port (+{step} for broker {node})": self.kafka_port + step,
            f"--kafka-controller-port (+{step} for broker {node})": self.kafka_controller_port + step,
        }

    def shape(self) -> dict[str, int]:
        """What a running stack cannot change without a restart, by flag: every other port follows."""
        return {
            "--brokers": self.brokers,
            "--kafka-port": self.kafka_port,
            "--kafka-controller-port": self.kafka_controller_port,
            "--bolt-port": self.bolt_port,
        }

    def ports(self) -> dict[str, int]:
        """Every port of the stack, keyed by the flag that sets it."""
        ports: dict[str, int] = {}
        for node in range(1, self.brokers + 1):
            ports.update(self.kafka_node_ports(node))
        return {**ports, "--bolt-port": self.bolt_port}

    @property
    def kafka_bootstrap(self) -> str:
        """Every broker's client address, comma-separated (what REPLICATOR_KAFKA_BOOTSTRAP takes)."""
        return ",".join(f"{self.host}:{self.kafka_port + i}" for i in range(self.brokers))

    @property
    def bolt_uri(self) -> str:
        return f"bolt://{self.host}:{self.bolt_port}"

    @property
    def state_file(self) -> Path:
        """Endpoints of the running stack, written by ``up`` and read by ``status``/``down`` and clients."""
        return self.root / "stack.json"
