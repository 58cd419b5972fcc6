"""The seed guide's configuration files, taken unchanged: ``migration-config.yaml``,
``neo4j-migration.yaml``, ``qdrant-migration.yaml``, ``hybrid-migration.yaml`` and the troubleshooting
keys (``batch_size``, ``parallel_workers``, ``memory_limit_mb``), all under ``migration:``.

``SEED_KEYS`` says, for every key the guide shows, what becomes of it: mapped to one of our settings,
accepted with a warning that names it (it has no effect here, and why), or refused by name when its
value asks for something we do not do. A key in no entry is refused ("did you mean"): nothing is ever
silently ignored. docs/config.md shows this table. Pure.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from replicator.errors import ConfigError

Action = Literal["section", "map", "warn", "check"]


@dataclass(frozen=True)
class SeedKey:
    """``action``: ``map`` to ``target`` (our ``section.key``), ``warn`` (accepted, no effect, ``why``),
    ``check`` (its value is what we do anyway: honoured, nothing to set), ``section`` (holds keys).
    ``accepts``: the only values taken (others are refused, with ``why``)."""

    action: Action
    target: str = ""
    why: str = ""
    accepts: tuple[object, ...] = ()


_NEO4J_DEST: Final = {
    "uri": SeedKey("map", "neo4j.uri"),
    "username": SeedKey("map", "neo4j.user"),
    "password": SeedKey("map", "neo4j.password", "a reference (${VAR}, {file: path}); written inline it is refused "
                        "unless allow_inline_secrets or REPLICATOR_NEO4J_PASSWORD overrides it"),
    "database": SeedKey("map", "neo4j.database"),
}  # fmt: skip
_QDRANT_DEST: Final = {
    "url": SeedKey("map", "qdrant.url"),
    "collection": SeedKey("map", "qdrant.collection"),
    "vector_size": SeedKey("map", "qdrant.vector_size", "must be the model's 384"),
    "distance": SeedKey("map", "qdrant.distance", "must be Cosine"),
    "api_key": SeedKey("map", "qdrant.api_key", "a reference, as a password"),
}
_SINGLE: Final = "single"  # the destination's own backend; resolved per file
_BOTH: Final = "both"  # every configured destination

SEED_KEYS: Final[dict[str, SeedKey]] = {
    "migration": SeedKey("section"),
    "migration.strategy": SeedKey("map", "strategy", "blue-green: export and import while the store is stopped; "
                                  "live: capture and replicate while it runs", ("blue-green", "live")),
    "migration.source": SeedKey("section"),
    "migration.source.backend": SeedKey("check", "", "the source is always Caxton's embedded store", ("embedded",)),
    "migration.source.config": SeedKey("section"),
    "migration.source.config.database_path": SeedKey("map", "store.path"),
    "migration.destination": SeedKey("section"),
    "migration.destination.backend": SeedKey("map", "cutover.target", "the cutover target and which sinks run",
                                             ("neo4j", "qdrant", "hybrid")),
    "migration.destination.config": SeedKey("section"),
    **{f"migration.destination.config.{k}": v for k, v in (_NEO4J_DEST | _QDRANT_DEST).items()},
    "migration.destination.config.graph_backend": SeedKey("section"),
    "migration.destination.config.graph_backend.type": SeedKey("check", "", "the graph backend is Neo4j", ("neo4j",)),
    **{f"migration.destination.config.graph_backend.{k}": v for k, v in _NEO4J_DEST.items()},
    "migration.destination.config.vector_backend": SeedKey("section"),
    "migration.destination.config.vector_backend.type": SeedKey("check", "", "the vector backend is Qdrant",
                                                                ("qdrant",)),
    **{f"migration.destination.config.vector_backend.{k}": v for k, v in _QDRANT_DEST.items()},
    "migration.mapping": SeedKey("section"),
    **{f"migration.mapping.{k}": SeedKey("map", f"neo4j.{k}") for k in (
        "entity_label", "tombstone_label", "position_label", "relation_type_property", "confidence_property",
        "strength_property")},
    "migration.validation": SeedKey("section"),
    "migration.validation.sample_queries": SeedKey("map", "validation.sample_queries"),
    "migration.validation.consistency_checks": SeedKey("check", "", "every cutover validates; it cannot be turned off",
                                                       (True,)),
    "migration.validation.performance_comparison": SeedKey(
        "map", "validation.performance_comparison", "true: a warning to run `replicator watch` after the switch"),
    "migration.settings": SeedKey("section"),
    "migration.settings.batch_size": SeedKey("map", f"{_SINGLE}.batch_size", "events per batch of the sink"),
    "migration.settings.parallel_uploads": SeedKey(
        "warn", "", "not used: a sink applies in order per partition; to upload in parallel, run more sink "
        "instances with the same group (up to kafka.partitions)"),
    "migration.settings.recreate_collection": SeedKey(
        "warn", "", "not used: the sink creates a missing collection and refuses one holding another store; "
        "to start over, delete the collection and its <collection>_positions yourself"),
    "migration.distribution": SeedKey("section"),
    "migration.distribution.entities": SeedKey("check", "", "always both: nodes in Neo4j, points in Qdrant", ("both",)),
    "migration.distribution.relations": SeedKey("check", "", "always Neo4j only", ("neo4j",)),
    "migration.distribution.embeddings": SeedKey("check", "", "always Qdrant only", ("qdrant",)),
    "migration.batch_size": SeedKey("map", f"{_BOTH}.batch_size", "events per batch of every sink"),
    "migration.parallel_workers": SeedKey(
        "warn", "", "not used: parallelism is the topics' partitions (kafka.partitions) and the sink instances"),
    "migration.memory_limit_mb": SeedKey(
        "warn", "", "not enforced: the snapshot and the sinks stream in bounded batches (lower batch_size to use "
        "less); set a hard limit with the service manager (systemd MemoryMax=)"),
}  # fmt: skip


def is_seed(data: Mapping[str, Any]) -> bool:
    """Whether a file is the seed guide's (everything under ``migration:``)."""
    return "migration" in data


def _walk(data: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """(dotted key, value) of every key, sections before their keys."""
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.append((path, value))
        if isinstance(value, dict):
            out.extend(_walk(value, path))
    return out


def seed_keys_of(data: Mapping[str, Any]) -> list[str]:
    """Every dotted key of a file (for the mapping test and ``config check``)."""
    return [key for key, _ in _walk(data, "")]


def translate(data: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """A seed file as our configuration's sections, the warnings (each naming its key), and which seed
    key each of our keys came from (to name it in a later error). Raises ConfigError naming a key that
    is unknown, in the wrong place, or asks for what we do not do."""
    unexpected = sorted(str(k) for k in data if k != "migration")
    if unexpected:
        raise ConfigError(
            f"{unexpected[0]} beside migration: in a seed guide file",
            hint="keep the guide's keys under migration:, or write replicator.yaml (config init)",
        )
    backend = _destination(data)
    out: dict[str, Any] = {"neo4j": {}} if backend in ("neo4j", "hybrid") else {}
    if backend in ("qdrant", "hybrid"):
        out["qdrant"] = {}
    warnings: list[str] = []
    origins: dict[str, str] = {}
    for key, value in _walk(data, ""):
        spec = SEED_KEYS.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, list(SEED_KEYS), n=1, cutoff=0.8)
            hint = f"did you mean {close[0]}?" if close else "docs/config.md lists the guide's keys"
            raise ConfigError(f"unknown key {key} (a seed guide file)", hint=hint)
        _check_value(key, spec, value)
        if spec.action == "warn":
            warnings.append(f"{key}: {spec.why}")
        elif spec.action == "map":
            for target in _targets(spec.target, backend):
                origins[target] = key
                section, _, name = target.rpartition(".")
                _check_destination(key, section, backend)
                if section:
                    out.setdefault(section, {})[name] = value
                else:
                    out[name] = value
    if not data.get("migration", {}).get("source", {}).get("config", {}).get("database_path"):
        warnings.append("migration.source.config.database_path is not given: the store is ./data/memory.db "
                        "(beside this file); --db overrides it")  # fmt: skip
    return out, warnings, origins


def named_as_in_seed(text: str, origins: Mapping[str, str]) -> str:
    """``text`` with our key names followed by the seed file's (``neo4j.password`` becomes
    ``migration.destination.config.password (neo4j.password)``): the operator edits the seed file."""
    for ours, theirs in origins.items():
        text = re.sub(rf"(?<![\w.]){re.escape(ours)}(?![\w])", f"{theirs} ({ours})", text, count=1)
    return text


def _destination(data: Mapping[str, Any]) -> str:
    migration = data.get("migration")
    destination = migration.get("destination") if isinstance(migration, dict) else None
    backend = destination.get("backend") if isinstance(destination, dict) else None
    if backend not in ("neo4j", "qdrant", "hybrid"):
        raise ConfigError(f"migration.destination.backend = {backend!r}: the migration needs a destination",
                          hint="neo4j, qdrant or hybrid")  # fmt: skip
    return str(backend)


def _targets(target: str, backend: str) -> list[str]:
    section, _, name = target.partition(".")
    if section == _SINGLE:
        return [f"{backend}.{name}"] if backend != "hybrid" else [f"neo4j.{name}", f"qdrant.{name}"]
    if section == _BOTH:
        return [f"{s}.{name}" for s in (("neo4j", "qdrant") if backend == "hybrid" else (backend,))]
    return [target]


def _check_value(key: str, spec: SeedKey, value: object) -> None:
    if spec.action == "section" and not isinstance(value, dict):
        raise ConfigError(f"{key} must be a section of keys", hint="as the guide shows it")
    if spec.accepts and value not in spec.accepts:
        choices = " or ".join(str(a) for a in spec.accepts)
        raise ConfigError(f"{key} = {value!r} is not supported: {spec.why}", hint=f"use {choices}")


def _check_destination(key: str, section: str, backend: str) -> None:
    if section in ("neo4j", "qdrant") and backend not in (section, "hybrid"):
        raise ConfigError(f"{key} is a {section} key, but migration.destination.backend is {backend}",
                          hint=f"remove it, or set backend: {section} (or hybrid)")  # fmt: skip
