"""How lag, cutover and rollback reach the sinks (flags, environment, files for secrets), declared
once for the three commands. Light: no client library is imported here (``replicator --help`` stays
fast); the sinks themselves are in :mod:`replicator.cutover.targets`.

Connection settings come from flags or the same environment variables the sink daemons read, so
that the defaults line up with theirs; secrets only from the environment or a file.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from replicator.clioptions import config_option, graph_options, secret_option
from replicator.errors import ConfigError
from replicator.secrets import read_secret
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.settings import (
    NEO4J_PASSWORD_ENV,
    NEO4J_PASSWORD_FILE_ENV,
    QDRANT_API_KEY_ENV,
    QDRANT_API_KEY_FILE_ENV,
    Neo4jSettings,
    QdrantSettings,
)
from replicator.transport.settings import DEFAULT_BOOTSTRAP
from replicator.transport.topics import DEFAULT_PREFIX

#: The sinks' consumer groups as the README runs them (each sink is named after its group).
DEFAULT_NEO4J_GROUP: Final = "replicator-sink-neo4j"
DEFAULT_QDRANT_GROUP: Final = "replicator-sink-qdrant"
#: The graph flags lag, cutover and rollback take (what the Neo4j sink writes with that they read).
_GRAPH: Final = (
    "entity_label", "position_label", "relation_type_property", "confidence_property", "strength_property", "layout",
)  # fmt: skip


def endpoint_url(value: str) -> str:
    """``host:port`` or ``http(s)://host:port`` as a base URL. Raises ConfigError."""
    url = value.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None or parts.path:
        raise ConfigError(
            f"--qdrant-endpoint {value!r} is not host:port or http://host:port",
            hint="the Qdrant sink's --metrics-port address, e.g. 127.0.0.1:9402",
        )
    return url


@dataclass(frozen=True)
class TargetOptions:
    """How lag, cutover and rollback reach the sinks. Raises ConfigError for a label that is not a
    plain identifier or an endpoint that is not an address."""

    bootstrap_servers: str
    topic_prefix: str
    neo4j: Neo4jSettings
    neo4j_sink: str
    neo4j_group: str
    entity_label: str
    position_label: str
    qdrant: QdrantSettings
    qdrant_api_key: str | None
    collection: str
    qdrant_sink: str
    qdrant_group: str
    #: The Qdrant sink's HTTP endpoint (e.g. http://127.0.0.1:9402). Required with --qdrant-path:
    #: Qdrant's local mode lets one process open the storage, and the running sink holds it, so
    #: lag, cutover and rollback ask the sink for what its destination holds.
    qdrant_endpoint: str | None = None
    #: The Neo4j sink's renamed properties (its --relation-type-property, ...): the graph is read
    #: under the names the sink wrote it with.
    relation_type_property: str = GraphModel.relation_type_property
    confidence_property: str = GraphModel.confidence_property
    strength_property: str = GraphModel.strength_property
    #: The layout the sinks write (docs/layouts.md).
    layout: str = GraphModel.layout

    def __post_init__(self) -> None:
        _ = self.graph_model  # validates the labels and property names
        if self.qdrant_endpoint is not None:
            object.__setattr__(self, "qdrant_endpoint", endpoint_url(self.qdrant_endpoint))

    @property
    def graph_model(self) -> GraphModel:
        """The Neo4j sink's graph names, as the sink was given them. Raises ConfigError."""
        return GraphModel(
            entity_label=self.entity_label, position_label=self.position_label,
            relation_type_property=self.relation_type_property, confidence_property=self.confidence_property,
            strength_property=self.strength_property, layout=self.layout,
        )  # fmt: skip


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Click options shared by lag, cutover and rollback; the command receives ``opts``."""
    options = [
        config_option(),
        click.option("--bootstrap-servers", envvar="REPLICATOR_KAFKA_BOOTSTRAP", default=DEFAULT_BOOTSTRAP,
                     show_default=True),
        click.option("--topic-prefix", envvar="REPLICATOR_TOPIC_PREFIX", default=DEFAULT_PREFIX, show_default=True),
        click.option("--neo4j-uri", envvar="REPLICATOR_NEO4J_URI", default=Neo4jSettings.uri, show_default=True),
        click.option("--neo4j-user", envvar="REPLICATOR_NEO4J_USER", default=Neo4jSettings.user, show_default=True),
        secret_option("--neo4j-password", NEO4J_PASSWORD_ENV, NEO4J_PASSWORD_FILE_ENV, "Neo4j password"),
        click.option("--neo4j-database", envvar="REPLICATOR_NEO4J_DATABASE", default=Neo4jSettings.database,
                     show_default=True),
        click.option("--neo4j-sink", default=None, help="The Neo4j sink's name [default: its group, as the sink's]."),
        click.option("--neo4j-group", default=DEFAULT_NEO4J_GROUP, show_default=True),
        click.option("--qdrant-url", envvar="REPLICATOR_QDRANT_URL"),
        click.option("--qdrant-path", envvar="REPLICATOR_QDRANT_PATH", type=click.Path(path_type=Path)),
        secret_option("--qdrant-api-key", QDRANT_API_KEY_ENV, QDRANT_API_KEY_FILE_ENV, "Qdrant API key"),
        click.option("--collection", default=QdrantSettings.collection, show_default=True),
        click.option("--qdrant-sink", default=None, help="The Qdrant sink's name [default: its group, as the sink's]."),
        click.option("--qdrant-group", default=DEFAULT_QDRANT_GROUP, show_default=True),
        click.option("--qdrant-endpoint", envvar="REPLICATOR_QDRANT_SINK_ENDPOINT",
                     help="The Qdrant sink's endpoint, host:port of its --metrics-port; needed with --qdrant-path."),
    ]  # fmt: skip

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:  # noqa: ANN401 - click passes options through
        qdrant_url, qdrant_path = kwargs.pop("qdrant_url"), kwargs.pop("qdrant_path")
        password = read_secret(kwargs.pop("neo4j_password"), kwargs.pop("neo4j_password_file"), "Neo4j password")
        api_key = read_secret(kwargs.pop("qdrant_api_key"), kwargs.pop("qdrant_api_key_file"), "Qdrant API key")
        opts = TargetOptions(
            bootstrap_servers=kwargs.pop("bootstrap_servers"),
            topic_prefix=kwargs.pop("topic_prefix"),
            neo4j=Neo4jSettings(uri=kwargs.pop("neo4j_uri"), user=kwargs.pop("neo4j_user"), password=password,
                                database=kwargs.pop("neo4j_database")),
            neo4j_sink=kwargs.pop("neo4j_sink") or kwargs["neo4j_group"],
            neo4j_group=kwargs.pop("neo4j_group"),
            entity_label=kwargs.pop("entity_label"),
            position_label=kwargs.pop("position_label"),
            qdrant=QdrantSettings(url=qdrant_url, path=qdrant_path or (None if qdrant_url else Path("./data/qdrant")),
                                  collection=kwargs["collection"], layout=kwargs["layout"]),
            qdrant_api_key=api_key,
            collection=kwargs.pop("collection"),
            qdrant_sink=kwargs.pop("qdrant_sink") or kwargs["qdrant_group"],
            qdrant_group=kwargs.pop("qdrant_group"),
            qdrant_endpoint=kwargs.pop("qdrant_endpoint") or None,
            relation_type_property=kwargs.pop("relation_type_property"),
            confidence_property=kwargs.pop("confidence_property"), strength_property=kwargs.pop("strength_property"),
            layout=kwargs.pop("layout"),
        )  # fmt: skip
        return command(opts=opts, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return graph_options(*_GRAPH)(wrapper)
