"""``replicator config init`` writes a commented starting file, and ``config check`` shows a loaded one:
every key of SCHEMA with its default (or the given value) and its one-line meaning. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from replicator.clioptions import PRECEDENCE
from replicator.config.model import MigrationConfig, Secret
from replicator.config.references import has_reference
from replicator.config.schema import SCHEMA

HEADER: Final = f"""\
# replicator.yaml: the whole migration in one file (docs/config.md). Every command reads it with
# --config replicator.yaml (or REPLICATOR_CONFIG=replicator.yaml); precedence: {PRECEDENCE}.
# Relative paths are relative to this file. Secrets: ${{VAR}}, ${{VAR:-default}} or {{file: path}}, never inline.
# Remove the neo4j: or the qdrant: section to migrate to one destination only.
"""


def scalar(value: object) -> str:
    """A YAML scalar for ``value`` (strings double-quoted, JSON being valid YAML)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))


def render(values: Mapping[str, Mapping[str, Any]] | None = None, sections: tuple[str, ...] | None = None,
           notes: tuple[str, ...] = ()) -> str:  # fmt: skip
    """The commented file: every key of ``sections`` (default: all), the value in ``values`` (section ->
    key -> raw value) or the default. ``notes`` go on top as comments."""
    values = values or {}
    lines = [HEADER.rstrip("\n"), *(f"# NOTE: {note}" for note in notes), ""]
    for section, keys in SCHEMA.items():
        if sections is not None and section and section not in sections:
            continue
        given = values.get(section, {})
        if section:
            lines.append(f"{section}:")
        indent = "  " if section else ""
        for key, spec in keys.items():
            lines.append(f"{indent}# {spec.meaning}")
            lines.append(f"{indent}{key}: {scalar(given.get(key, spec.default))}")
        lines.append("")
    return "\n".join(lines)


def from_seed(translated: Mapping[str, Any], warnings: tuple[str, ...]) -> str:
    """A seed guide file, translated (``seed.translate``), as a replicator.yaml: its values, defaults for
    the rest, an inline secret replaced by a reference, its warnings as notes."""
    values: dict[str, dict[str, Any]] = {"": {}}
    for section, content in translated.items():
        if isinstance(content, dict):
            values[section] = dict(content)
        else:
            values[""][section] = content
    notes = [*warnings, "paths are kept as the seed file writes them: relative to this file's directory"]
    for section, key, env in (("neo4j", "password", "NEO4J_PASSWORD"), ("qdrant", "api_key", "QDRANT_API_KEY")):
        raw = values.get(section, {}).get(key)
        if isinstance(raw, str) and not has_reference(raw):
            values[section][key] = f"${{{env}}}"
            notes.append(f"{section}.{key} was written in the seed file; here it is ${{{env}}}: export {env}")
    if values.get("qdrant", {}).get("url") is not None:
        values["qdrant"].setdefault("path", None)  # a server: no local path
    sections = tuple(name for name in ("neo4j", "qdrant") if name in values)
    return render(values, ("store", "kafka", "source", *sections, "cutover", "validation"), tuple(notes))


def _secret(secret: Secret | None) -> str | None:
    return None if secret is None else secret.masked


def shown(config: MigrationConfig) -> dict[str, dict[str, Any]]:
    """The effective configuration by file key, secrets masked (``config check``)."""
    out: dict[str, dict[str, Any]] = {
        "": {"strategy": config.strategy},
        "store": {"path": config.store.path, "caxton_config": config.store.caxton_config},
        "kafka": {"bootstrap": config.kafka.bootstrap, "topic_prefix": config.kafka.topic_prefix,
                  "schema_registry": config.kafka.schema_registry, "max_message_bytes": config.kafka.max_message_bytes,
                  "replication_factor": config.kafka.replication_factor,
                  "min_insync_replicas": config.kafka.min_insync_replicas, "partitions": config.kafka.partitions},
        "source": {"heartbeat_interval_s": config.source.heartbeat_interval_s, "batch_rows": config.source.batch_rows,
                   "snapshot_chunk_rows": config.source.snapshot_chunk_rows,
                   "metrics_port": config.source.metrics_port, "metrics_host": config.source.metrics_host},
    }  # fmt: skip
    if config.neo4j is not None:
        n = config.neo4j
        out["neo4j"] = {"uri": n.uri, "database": n.database, "user": n.user, "password": _secret(n.password),
                        "layout": n.layout, **{k: getattr(n.graph, k) for k in SCHEMA["neo4j"] if hasattr(n.graph, k)},
                        "group": n.group, "sink": n.sink, "batch_size": n.batch.size, "batch_age_ms": n.batch.age_ms,
                        "metrics_port": n.metrics_port, "metrics_host": n.metrics_host}  # fmt: skip
    if config.qdrant is not None:
        q = config.qdrant
        out["qdrant"] = {"url": q.url, "path": q.path, "collection": q.collection, "vector_size": q.vector_size,
                         "distance": q.distance, "api_key": _secret(q.api_key), "layout": q.layout, "group": q.group,
                         "sink": q.sink, "batch_size": q.batch.size, "batch_age_ms": q.batch.age_ms,
                         "encode_batch": q.encode_batch, "metrics_port": q.metrics_port,
                         "metrics_host": q.metrics_host}  # fmt: skip
    c = config.cutover
    out["cutover"] = {"target": config.target if config.neo4j or config.qdrant else None,
                      "max_pause": f"{c.max_pause_s:g}s", "max_lag": c.max_lag, "writer_wait": f"{c.writer_wait_s:g}s",
                      "postpone_flag": c.postpone_flag, "confirm": c.confirm, "reverse": c.reverse}  # fmt: skip
    v = config.validation
    out["validation"] = {"sample_queries": v.sample_queries, "consistency_checks": v.consistency_checks,
                         "performance_comparison": v.performance_comparison}  # fmt: skip
    return out


def show(config: MigrationConfig) -> str:
    """``shown`` as YAML text."""
    lines: list[str] = []
    for section, keys in shown(config).items():
        if section:
            lines.append(f"{section}:")
        indent = "  " if section else ""
        lines.extend(f"{indent}{key}: {scalar(str(v) if isinstance(v, Path) else v)}" for key, v in keys.items())
    return "\n".join(lines)
