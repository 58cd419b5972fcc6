"""The keys of ``replicator.yaml``: each key's type, default and one-line meaning, declared once here
for the loader, ``config init`` (the commented starting file) and ``config check``. Defaults are the
owners' (model.py references them); this table only says how to read and describe each key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from replicator.config.model import (
    BatchConfig,
    CutoverPolicy,
    KafkaConfig,
    Neo4jConfig,
    QdrantConfig,
    SourceOptions,
    StoreConfig,
    ValidationConfig,
)
from replicator.config.references import expand, leaf
from replicator.errors import ConfigError
from replicator.sinks.neo4j.model import GraphModel
from replicator.source.settings import parse_duration
from replicator.transport.settings import parse_size


@dataclass(frozen=True)
class Context:
    """What reading a value needs: the environment (for ``${VAR}``), the file's directory (relative
    paths are relative to the file, so a daemon and a command run from elsewhere agree)."""

    environ: Mapping[str, str]
    base: Path
    allow_inline: bool


Reader = Callable[[str, object, Context], Any]


def _text(key: str, value: object, ctx: Context) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{key} = {value!r} is not text", hint=f'write {key.rsplit(".", maxsplit=1)[-1]}: "..."')
    return expand(key, str(value), ctx.environ)


def _optional_text(key: str, value: object, ctx: Context) -> str | None:
    return None if value is None else _text(key, value, ctx)


def _int(key: str, value: object, ctx: Context) -> int:
    if isinstance(value, str):
        value = expand(key, value, ctx.environ)
    text = str(value).strip()
    if isinstance(value, bool | float) or not text.lstrip("-").isdigit():
        raise ConfigError(f"{key} = {value!r} is not a whole number", hint="e.g. 1000")
    return int(text)


def _optional_int(key: str, value: object, ctx: Context) -> int | None:
    return None if value is None else _int(key, value, ctx)


def _bool(key: str, value: object, ctx: Context) -> bool:
    if isinstance(value, str):
        value = {"true": True, "false": False}.get(expand(key, value, ctx.environ).strip().lower(), value)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r} is not true or false", hint=f"write {leaf(key)}: true")
    return value


def _path(key: str, value: object, ctx: Context) -> Path:
    path = Path(_text(key, value, ctx)).expanduser()
    return path if path.is_absolute() else ctx.base / path


def _optional_path(key: str, value: object, ctx: Context) -> Path | None:
    return None if value is None else _path(key, value, ctx)


def _duration(key: str, value: object, ctx: Context) -> float:
    return parse_duration(expand(key, value, ctx.environ) if isinstance(value, str) else value, key)


def _size(key: str, value: object, ctx: Context) -> int:
    return parse_size(expand(key, value, ctx.environ) if isinstance(value, str) else value, key)


def _secret(key: str, value: object, ctx: Context) -> object:
    return value  # resolved by the loader (references.secret), which knows allow_inline_secrets


@dataclass(frozen=True)
class Key:
    """One key: how to read it, its default as written in a file, what it means."""

    read: Reader
    default: object
    meaning: str


_G = GraphModel()
_N = Neo4jConfig()
_Q = QdrantConfig(path=Path("./data/qdrant"))
_B = BatchConfig()
_K = KafkaConfig()
_C = CutoverPolicy()
_V = ValidationConfig()
_S = SourceOptions()


def _graph_keys() -> dict[str, Key]:
    return {
        "entity_label": Key(_text, _G.entity_label, "label of entity nodes"),
        "tombstone_label": Key(_text, _G.tombstone_label, "label of tombstone nodes"),
        "position_label": Key(_text, _G.position_label, "label of the sinks' position nodes"),
        "relation_type_property": Key(_text, _G.relation_type_property, "relationship property: exact relation_type"),
        "confidence_property": Key(_text, _G.confidence_property, "property holding confidence"),
        "strength_property": Key(_text, _G.strength_property, "property holding strength"),
    }  # fmt: skip


def _sink_keys(group: str) -> dict[str, Key]:
    return {
        "group": Key(_text, group, "the sink's Kafka consumer group"),
        "sink": Key(_optional_text, None, "name of the sink's stored position (default: the group)"),
        "batch_size": Key(_int, _B.size, "events per batch the sink applies"),
        "batch_age_ms": Key(_int, _B.age_ms, "longest a batch waits before it is applied (ms)"),
        "metrics_port": Key(_optional_int, None, "the sink's /metrics, /healthz, /position port (none: off)"),
        "metrics_host": Key(_text, _S.metrics_host, "address the sink's endpoint binds (0.0.0.0: every interface)"),
    }


#: Section -> key -> Key. A top-level key with no section is under "".
SCHEMA: Final[dict[str, dict[str, Key]]] = {
    "": {
        "strategy": Key(_text, "live", "live (capture, replicate, cut over) or blue-green (export, import)"),
        "allow_inline_secrets": Key(_bool, False, "accept a password written in this file (not recommended)"),
    },
    "store": {
        "path": Key(_path, str(StoreConfig.path), "Caxton's memory store (SQLite), the source"),
        "caxton_config": Key(_optional_path, None, "Caxton's caxton.yaml, switched by the cutover"),
    },
    "kafka": {
        "bootstrap": Key(_text, _K.bootstrap, "Kafka brokers, host:port[,host:port]"),
        "topic_prefix": Key(_text, _K.topic_prefix, "prefix of every topic (<prefix>.entities, ...)"),
        "schema_registry": Key(_optional_text, None, "Schema Registry URL (Confluent framing); none: single-object"),
        "replication_factor": Key(_optional_int, None, "replicas of the topics created (none: min(3, brokers))"),
        "min_insync_replicas": Key(_optional_int, None, "in-sync replicas a write needs (none: min(2, replicas))"),
        "max_message_bytes": Key(_size, "32MiB", "Kafka's record limit for the whole pipeline"),
        "partitions": Key(_int, _K.partitions, "partitions of the topics the source creates"),
    },
    "source": {
        "heartbeat_interval_s": Key(_duration, f"{_S.heartbeat_interval_s:g}s", "heartbeat period while idle"),
        "batch_rows": Key(_int, _S.batch_rows, "changelog rows per Kafka transaction"),
        "snapshot_chunk_rows": Key(_int, _S.snapshot_chunk_rows, "snapshot rows per Kafka transaction"),
        "metrics_port": Key(_optional_int, None, "the source's /metrics and /healthz port (none: off)"),
        "metrics_host": Key(_text, _S.metrics_host, "address the source's endpoint binds"),
    },
    "neo4j": {
        "uri": Key(_text, _N.uri, "Bolt address of Neo4j"),
        "database": Key(_text, _N.database, "Neo4j database"),
        "user": Key(_text, _N.user, "Neo4j user"),
        "password": Key(_secret, "${NEO4J_PASSWORD}", "${VAR} or {file: path}; never the password itself"),
        "layout": Key(_text, _N.layout, "graph layout: caxton or mcp (mcp-neo4j-memory)"),
        **_graph_keys(),
        **_sink_keys(_N.group),
    },
    "qdrant": {
        "url": Key(_optional_text, None, "Qdrant server URL (or path: for local mode)"),
        "path": Key(_optional_path, str(_Q.path), "local-mode storage directory (or url: for a server)"),
        "collection": Key(_text, _Q.collection, "the collection of entity vectors"),
        "vector_size": Key(_int, _Q.vector_size, "vector size: the model's, nothing else is accepted"),
        "distance": Key(_text, _Q.distance, "vector distance: Cosine, nothing else is accepted"),
        "api_key": Key(_secret, None, "${VAR} or {file: path} (a server's API key)"),
        "layout": Key(_text, _Q.layout, "payload layout: caxton or mcp (mcp-server-qdrant)"),
        **_sink_keys(_Q.group),
        "encode_batch": Key(_int, _Q.encode_batch, "texts per model.encode call"),
    },
    "cutover": {
        "target": Key(_optional_text, None, "neo4j, qdrant or hybrid (none: every destination configured)"),
        "max_pause": Key(_duration, f"{_C.max_pause_s:g}s", "abort if writers would wait longer"),
        "max_lag": Key(_int, _C.max_lag, "refuse to start when a sink is more seq behind"),
        "writer_wait": Key(_duration, f"{_C.writer_wait_s:g}s", "how long Caxton's writers wait for the lock"),
        "postpone_flag": Key(_optional_path, None, "wait until this file is gone before the fence"),
        "confirm": Key(_bool, _C.confirm, "ask for a confirmation before the fence"),
        "reverse": Key(_bool, _C.reverse, "capture Neo4j's writes after the switch, for a lossless rollback"),
    },
    "validation": {
        "sample_queries": Key(_optional_int, None, "entities compared field by field (none: cutover 0, validate 100)"),
        "consistency_checks": Key(_bool, _V.consistency_checks, "compare counts and the sample before the switch"),
        "performance_comparison": Key(_bool, _V.performance_comparison, "compare read latency old vs new after"),
    },
}
