"""The ``REPLICATOR_*`` variables over a loaded configuration, for code that takes a MigrationConfig
rather than click parameters (``config check --connect``, ``migrate``): the same precedence as every
command, variable > file > default. Blocking only to read a secret's file."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from replicator.config.model import MigrationConfig, Secret
from replicator.errors import ConfigError
from replicator.secrets import read_secret
from replicator.sinks.settings import (
    NEO4J_PASSWORD_ENV,
    NEO4J_PASSWORD_FILE_ENV,
    QDRANT_API_KEY_ENV,
    QDRANT_API_KEY_FILE_ENV,
)
from replicator.source.settings import ENV as SOURCE_ENV
from replicator.source.settings import parse_duration
from replicator.transport.settings import parse_size


def _flag(value: str) -> bool:
    word = value.strip().lower()
    if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(value)
    return word in ("1", "true", "yes", "on")


#: Variable -> (section, field, convert): what every command reads, as the file's setting it overrides.
PLAIN: Final[dict[str, tuple[str, str, Callable[[str], Any]]]] = {
    SOURCE_ENV["db"]: ("store", "path", Path),
    SOURCE_ENV["bootstrap_servers"]: ("kafka", "bootstrap", str),
    SOURCE_ENV["topic_prefix"]: ("kafka", "topic_prefix", str),
    SOURCE_ENV["schema_registry"]: ("kafka", "schema_registry", str),
    SOURCE_ENV["max_message_bytes"]: ("kafka", "max_message_bytes", lambda v: parse_size(v, "max_message_bytes")),
    SOURCE_ENV["replication_factor"]: ("kafka", "replication_factor", int),
    SOURCE_ENV["min_insync_replicas"]: ("kafka", "min_insync_replicas", int),
    "REPLICATOR_NEO4J_URI": ("neo4j", "uri", str),
    "REPLICATOR_NEO4J_USER": ("neo4j", "user", str),
    "REPLICATOR_NEO4J_DATABASE": ("neo4j", "database", str),
    "REPLICATOR_QDRANT_URL": ("qdrant", "url", str),
    "REPLICATOR_QDRANT_PATH": ("qdrant", "path", Path),
    "REPLICATOR_QDRANT_COLLECTION": ("qdrant", "collection", str),
    # What makes a deployment (or a test on a shared stack) its own while its file stays as it is:
    SOURCE_ENV["metrics_port"]: ("source", "metrics_port", int),
    "REPLICATOR_NEO4J_GROUP": ("neo4j", "group", str),
    "REPLICATOR_NEO4J_METRICS_PORT": ("neo4j", "metrics_port", int),
    "REPLICATOR_NEO4J_ENTITY_LABEL": ("neo4j", "graph.entity_label", str),
    "REPLICATOR_NEO4J_TOMBSTONE_LABEL": ("neo4j", "graph.tombstone_label", str),
    "REPLICATOR_NEO4J_POSITION_LABEL": ("neo4j", "graph.position_label", str),
    "REPLICATOR_QDRANT_GROUP": ("qdrant", "group", str),
    "REPLICATOR_QDRANT_METRICS_PORT": ("qdrant", "metrics_port", int),
    "REPLICATOR_CUTOVER_MAX_PAUSE": ("cutover", "max_pause_s", lambda v: parse_duration(v, "cutover.max_pause")),
    "REPLICATOR_CUTOVER_REVERSE": ("cutover", "reverse", _flag),
}
#: Secret (section, field) -> its variable and the variable naming its file.
SECRETS: Final = {("neo4j", "password"): (NEO4J_PASSWORD_ENV, NEO4J_PASSWORD_FILE_ENV, "Neo4j password"),
                  ("qdrant", "api_key"): (QDRANT_API_KEY_ENV, QDRANT_API_KEY_FILE_ENV, "Qdrant API key")}  # fmt: skip


def _secret(environ: Mapping[str, str], env: str, file_env: str, what: str) -> Secret | None:
    value, file = environ.get(env) or None, environ.get(file_env) or None
    found = read_secret(value, Path(file) if file else None, what)
    if found is None:
        return None
    return Secret(found, f"${file_env} ({file})" if file else f"${env}")


def with_environment(config: MigrationConfig, environ: Mapping[str, str]) -> tuple[MigrationConfig, list[str]]:
    """``config`` with every variable that is set applied over the file's value, and the list of what
    was overridden ("REPLICATOR_X -> section.key"). A section the file does not have is not created
    (a variable does not add a destination). Raises ConfigError naming a variable whose value does
    not parse."""
    changes: dict[str, dict[str, Any]] = {}
    applied = []
    for env, (section, key, convert) in PLAIN.items():
        if environ.get(env):
            changes.setdefault(section, {})[key] = _converted(env, environ[env], convert)
            applied.append(f"{env} -> {section}.{key.removeprefix('graph.')}")
    for (section, key), (env, file_env, what) in SECRETS.items():
        secret = _secret(environ, env, file_env, what)
        if secret is not None:
            changes.setdefault(section, {})[key] = secret
            applied.append(f"{secret.origin.split(' ')[0].lstrip('$')} -> {section}.{key}")
    updated: dict[str, Any] = {}
    for section, values in changes.items():
        current = getattr(config, section)
        if current is not None:
            updated[section] = dataclasses.replace(current, **_section_values(section, current, values))
    return dataclasses.replace(config, **updated), applied


def _converted(env: str, value: str, convert: Callable[[str], Any]) -> Any:  # noqa: ANN401 - the setting's type
    try:
        return convert(value)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"{env} = {value!r} is not a valid value", hint=f"fix or unset {env} ({exc})") from exc


def _section_values(section: str, current: Any, values: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN401
    """The fields to replace in ``current``: graph labels go into its graph model; a server url replaces a
    local path and the other way round; a sink named after its group (the default) follows the group."""
    graph = {key.removeprefix("graph."): values.pop(key) for key in list(values) if key.startswith("graph.")}
    if graph:
        values["graph"] = dataclasses.replace(current.graph, **graph)
    if section == "qdrant" and "url" in values and "path" not in values:
        values["path"] = None  # a server named by the environment replaces the file's local path
    if section == "qdrant" and "path" in values and "url" not in values:
        values.update(url=None, api_key=None)  # a local path named by the environment replaces the file's server
    if "group" in values and current.sink == current.group:
        values["sink"] = values["group"]
    return values
