"""One configuration file for the whole migration (``replicator.yaml``, or one of the seed guide's
files as they are): :func:`load_config` reads it into a frozen :class:`MigrationConfig`."""

from replicator.config.loader import load_config
from replicator.config.model import (
    BatchConfig,
    CutoverPolicy,
    KafkaConfig,
    LoadedConfig,
    MigrationConfig,
    Neo4jConfig,
    QdrantConfig,
    Secret,
    StoreConfig,
    ValidationConfig,
)
from replicator.errors import ConfigError

__all__ = [
    "BatchConfig",
    "ConfigError",
    "CutoverPolicy",
    "KafkaConfig",
    "LoadedConfig",
    "MigrationConfig",
    "Neo4jConfig",
    "QdrantConfig",
    "Secret",
    "StoreConfig",
    "ValidationConfig",
    "load_config",
]
