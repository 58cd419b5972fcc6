"""One configuration file for the whole migration (``replicator.yaml``, or one of the seed guide's
files as they are): :func:`load_config` reads it into a frozen :class:`MigrationConfig`.

The names are loaded on first use, so that ``replicator --help`` (which registers ``config``) does not
import every settings module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from replicator.errors import ConfigError

if TYPE_CHECKING:
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
        SourceOptions,
        StoreConfig,
        ValidationConfig,
    )

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
    "SourceOptions",
    "StoreConfig",
    "ValidationConfig",
    "load_config",
]


def __getattr__(name: str) -> Any:  # noqa: ANN401 - a module attribute of any kind
    if name == "load_config":
        return importlib.import_module("replicator.config.loader").load_config
    if name in __all__:
        return getattr(importlib.import_module("replicator.config.model"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
