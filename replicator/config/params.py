"""A configuration as the values of a command's parameters (click's ``default_map``), so that flags
and ``REPLICATOR_*`` variables override the file and the file overrides the defaults: the one
precedence every command has (flag > variable > file > default).

Every command names the same setting the same way (``--topic-prefix``, ``--neo4j-group``, ...), except
the sinks, which name their own destination's settings plainly (``sink neo4j --group``): ``scope``
says which destination that is. Pure.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from replicator.config.model import MigrationConfig, Neo4jConfig, QdrantConfig
from replicator.sinks.neo4j.model import GraphModel

Scope = Literal["neo4j", "qdrant", "qdrant-points", "source"]
#: The graph names every Neo4j reader and the sink take, under the same parameter names.
_GRAPH: Final = ("entity_label", "tombstone_label", "position_label", "relation_type_property", "confidence_property",
                 "strength_property")  # fmt: skip
#: Loopback: where lag, cutover and rollback reach a sink's endpoint on this host.
_LOCAL: Final = "127.0.0.1"


def _graph(graph: GraphModel) -> dict[str, Any]:
    return {name: getattr(graph, name) for name in _GRAPH}


def _neo4j(neo4j: Neo4jConfig) -> dict[str, Any]:
    return {
        "neo4j_uri": neo4j.uri, "neo4j_user": neo4j.user, "neo4j_database": neo4j.database,
        "neo4j_password": neo4j.password.value if neo4j.password else None,
        "neo4j_sink": neo4j.sink, "neo4j_group": neo4j.group, "neo4j_layout": neo4j.layout,
        **_graph(neo4j.graph),
    }  # fmt: skip


def _qdrant(qdrant: QdrantConfig) -> dict[str, Any]:
    endpoint = f"{_LOCAL}:{qdrant.metrics_port}" if qdrant.metrics_port and qdrant.path is not None else None
    return {
        "qdrant_url": qdrant.url, "qdrant_path": qdrant.path, "collection": qdrant.collection,
        "qdrant_api_key": qdrant.api_key.value if qdrant.api_key else None,
        "qdrant_sink": qdrant.sink, "qdrant_group": qdrant.group, "qdrant_endpoint": endpoint,
        "qdrant_layout": qdrant.layout,
    }  # fmt: skip


def _neo4j_sink(neo4j: Neo4jConfig) -> dict[str, Any]:
    return {
        "uri": neo4j.uri, "user": neo4j.user, "database": neo4j.database,
        "password": neo4j.password.value if neo4j.password else None,
        "group": neo4j.group, "sink_name": neo4j.sink,
        "batch_size": neo4j.batch.size, "batch_age_ms": neo4j.batch.age_ms,
        "metrics_port": neo4j.metrics_port, "metrics_host": neo4j.metrics_host, "layout": neo4j.layout,
    }  # fmt: skip


def _qdrant_points(qdrant: QdrantConfig) -> dict[str, Any]:
    return {"url": qdrant.url, "path": qdrant.path, "collection": qdrant.collection,
            "api_key": qdrant.api_key.value if qdrant.api_key else None, "layout": qdrant.layout}  # fmt: skip


def _qdrant_sink(qdrant: QdrantConfig) -> dict[str, Any]:
    return {
        **_qdrant_points(qdrant), "group": qdrant.group, "sink_name": qdrant.sink, "batch_size": qdrant.batch.size,
        "batch_age_ms": qdrant.batch.age_ms, "encode_batch": qdrant.encode_batch,
        "metrics_port": qdrant.metrics_port, "metrics_host": qdrant.metrics_host,
    }  # fmt: skip


def _common(config: MigrationConfig) -> dict[str, Any]:
    kafka, cut = config.kafka, config.cutover
    return {
        "db": config.store.path, "caxton_config": config.store.caxton_config,
        "bootstrap_servers": kafka.bootstrap, "topic_prefix": kafka.topic_prefix,
        "schema_registry": kafka.schema_registry, "max_message_bytes": str(kafka.max_message_bytes),
        "partitions": kafka.partitions, "replication_factor": kafka.replication_factor,
        "min_insync_replicas": kafka.min_insync_replicas,
        "max_pause": f"{cut.max_pause_s:g}s", "writer_wait": f"{cut.writer_wait_s:g}s", "max_lag": cut.max_lag,
        "postpone_flag": cut.postpone_flag, "sample": config.validation.sample_queries,
        "no_reverse": not cut.reverse,
    }  # fmt: skip


def _source(config: MigrationConfig) -> dict[str, Any]:
    source = config.source
    return {"metrics_port": source.metrics_port, "metrics_host": source.metrics_host,
            "heartbeat_interval": f"{source.heartbeat_interval_s:g}s", "batch_rows": source.batch_rows}  # fmt: skip


def param_values(config: MigrationConfig, scope: Scope | None = None) -> dict[str, Any]:
    """Parameter name -> value for every setting the file gives (None values left out: the command's
    own default applies). ``scope``: the destination a sink command writes (its plain names)."""
    out = _common(config)
    if config.neo4j is not None or config.qdrant is not None:
        out["target"] = config.target
        out["kinds"] = tuple(kind for kind in ("neo4j", "qdrant") if getattr(config, kind) is not None)
    if config.neo4j is not None:
        out.update(_neo4j(config.neo4j))
    if config.qdrant is not None:
        out.update(_qdrant(config.qdrant))
    layouts = {config.neo4j.layout if config.neo4j else None, config.qdrant.layout if config.qdrant else None} - {None}
    if len(layouts) == 1:  # the one --layout of a command reading both (clioptions refuses two)
        out["layout"] = layouts.pop()
    if scope == "neo4j" and config.neo4j is not None:
        out.update(_neo4j_sink(config.neo4j))
    elif scope == "qdrant" and config.qdrant is not None:
        out.update(_qdrant_sink(config.qdrant))
    elif scope == "qdrant-points" and config.qdrant is not None:
        out.update(_qdrant_points(config.qdrant))
    elif scope == "source":
        out.update(_source(config))
    return {name: value for name, value in out.items() if value is not None}
