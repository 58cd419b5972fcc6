"""Connection settings of the destinations, frozen and validated, read from flags or environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from replicator.errors import ConfigError
from replicator.secrets import secret_from_env

#: Environment variables of the secrets: the value itself, or a file holding it (first line).
NEO4J_PASSWORD_ENV: Final = "REPLICATOR_NEO4J_PASSWORD"
NEO4J_PASSWORD_FILE_ENV: Final = "REPLICATOR_NEO4J_PASSWORD_FILE"
QDRANT_API_KEY_ENV: Final = "REPLICATOR_QDRANT_API_KEY"
QDRANT_API_KEY_FILE_ENV: Final = "REPLICATOR_QDRANT_API_KEY_FILE"


@dataclass(frozen=True)
class Neo4jSettings:
    """Where and as whom to reach Neo4j. There is no built-in password: it comes from the
    environment or a file (``None``: connect without authentication)."""

    uri: str = "bolt://127.0.0.1:7687"
    user: str = "neo4j"
    password: str | None = field(default=None, repr=False)
    database: str = "neo4j"

    def __post_init__(self) -> None:
        if not self.uri.startswith(("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")):
            raise ConfigError(
                f"Neo4j URI {self.uri!r} has no Bolt scheme",
                hint="use bolt://host:7687 (one server) or neo4j://host:7687 (a cluster)",
            )

    @classmethod
    def from_env(cls) -> Neo4jSettings:
        """REPLICATOR_NEO4J_URI / _USER / _DATABASE (defaults: the local stack's address) and the
        password from REPLICATOR_NEO4J_PASSWORD or the file REPLICATOR_NEO4J_PASSWORD_FILE names."""
        return cls(
            uri=os.environ.get("REPLICATOR_NEO4J_URI", cls.uri),
            user=os.environ.get("REPLICATOR_NEO4J_USER", cls.user),
            password=secret_from_env(NEO4J_PASSWORD_ENV, NEO4J_PASSWORD_FILE_ENV, "Neo4j password"),
            database=os.environ.get("REPLICATOR_NEO4J_DATABASE", cls.database),
        )

    def auth(self) -> tuple[str, str] | None:
        return (self.user, self.password) if self.password else None


@dataclass(frozen=True)
class QdrantSettings:
    """Either a server ``url`` or a local-mode ``path`` (qdrant-client's embedded storage), not both."""

    url: str | None = None
    path: Path | None = None
    collection: str = "caxton_embeddings"
    #: The destination layout (docs/layouts.md, sinks/qdrant/layout.py): caxton or mcp.
    layout: str = "caxton"

    def __post_init__(self) -> None:
        from replicator.sinks.layouts import LAYOUTS  # noqa: PLC0415 - declared once there

        if self.layout not in LAYOUTS:
            raise ConfigError(f"unknown layout {self.layout!r}", hint=f"use one of {', '.join(LAYOUTS)}")
        if (self.url is None) == (self.path is None):
            raise ConfigError(
                "Qdrant needs exactly one of a server URL and a local path",
                hint="--qdrant-url http://localhost:6333 for a server, --qdrant-path DIR for local mode",
            )
        if not self.collection:
            raise ConfigError("Qdrant collection name is empty", hint="e.g. caxton_embeddings")
