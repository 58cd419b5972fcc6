"""The sinks as lag and cutover see them: where each one's position lives, which Kafka group and
topics it reads, and a quick check of its destination against the store.

Positions are read as docs/design.md §5 defines them. Connection settings come from flags or the
same environment variables the sink daemons read, so that the defaults line up with theirs.
"""

from __future__ import annotations

import functools
import json
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from neo4j import GraphDatabase
from qdrant_client import QdrantClient

from replicator.capture.install import open_store
from replicator.errors import ReplicatorError
from replicator.migrate.validate import validate_store
from replicator.position import SinkPosition
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.transport.settings import DEFAULT_BOOTSTRAP


@dataclass(frozen=True)
class TargetOptions:
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
    #: lag and cutover ask the sink for what its destination holds.
    qdrant_endpoint: str | None = None


def target_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Click options shared by lag, cutover and validate; the command receives ``opts``."""
    options = [
        click.option("--bootstrap-servers", envvar="REPLICATOR_KAFKA_BOOTSTRAP", default=DEFAULT_BOOTSTRAP,
                     show_default=True),
        click.option("--topic-prefix", envvar="REPLICATOR_TOPIC_PREFIX", default="caxton.memory", show_default=True),
        click.option("--neo4j-uri", envvar="REPLICATOR_NEO4J_URI", default="bolt://127.0.0.1:7687", show_default=True),
        click.option("--neo4j-user", envvar="REPLICATOR_NEO4J_USER", default="neo4j", show_default=True),
        click.option("--neo4j-password", envvar="REPLICATOR_NEO4J_PASSWORD", default="replicator-local"),
        click.option("--neo4j-database", envvar="REPLICATOR_NEO4J_DATABASE", default="neo4j", show_default=True),
        click.option("--neo4j-sink", default=None, help="The Neo4j sink's name [default: its group, as the sink's]."),
        click.option("--neo4j-group", default="replicator-sink-neo4j", show_default=True),
        click.option("--entity-label", default="Entity", show_default=True),
        click.option("--position-label", default="ReplicatorPosition", show_default=True),
        click.option("--qdrant-url", envvar="REPLICATOR_QDRANT_URL"),
        click.option("--qdrant-path", envvar="REPLICATOR_QDRANT_PATH", type=click.Path(path_type=Path)),
        click.option("--qdrant-api-key", envvar="REPLICATOR_QDRANT_API_KEY"),
        click.option("--collection", default="caxton_embeddings", show_default=True),
        click.option("--qdrant-sink", default=None, help="The Qdrant sink's name [default: its group, as the sink's]."),
        click.option("--qdrant-group", default="replicator-sink-qdrant", show_default=True),
        click.option("--qdrant-endpoint", envvar="REPLICATOR_QDRANT_SINK_ENDPOINT",
                     help="The Qdrant sink's metrics address; needed with --qdrant-path (local mode)."),
    ]  # fmt: skip

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:  # noqa: ANN401 - click passes options through
        qdrant_url, qdrant_path = kwargs.pop("qdrant_url"), kwargs.pop("qdrant_path")
        opts = TargetOptions(
            bootstrap_servers=kwargs.pop("bootstrap_servers"),
            topic_prefix=kwargs.pop("topic_prefix"),
            neo4j=Neo4jSettings(
                uri=kwargs.pop("neo4j_uri"), user=kwargs.pop("neo4j_user"),
                password=kwargs.pop("neo4j_password"), database=kwargs.pop("neo4j_database"),
            ),
            neo4j_sink=kwargs.pop("neo4j_sink") or kwargs["neo4j_group"],
            neo4j_group=kwargs.pop("neo4j_group"),
            entity_label=kwargs.pop("entity_label"),
            position_label=kwargs.pop("position_label"),
            qdrant=QdrantSettings(url=qdrant_url, path=qdrant_path or (None if qdrant_url else Path("./data/qdrant")),
                                  collection=kwargs["collection"]),
            qdrant_api_key=kwargs.pop("qdrant_api_key"),
            collection=kwargs.pop("collection"),
            qdrant_sink=kwargs.pop("qdrant_sink") or kwargs["qdrant_group"],
            qdrant_group=kwargs.pop("qdrant_group"),
            qdrant_endpoint=kwargs.pop("qdrant_endpoint"),
        )  # fmt: skip
        return command(opts=opts, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _store_counts(db: Path) -> tuple[int, int]:
    conn = open_store(db, readonly=True)
    try:
        return (int(conn.execute("SELECT count(*) FROM entities").fetchone()[0]),
                int(conn.execute("SELECT count(*) FROM relations").fetchone()[0]))  # fmt: skip
    finally:
        conn.close()


class Neo4jTarget:
    """The Neo4j sink: position node and a count check. One driver per instance; close() it."""

    def __init__(self, opts: TargetOptions) -> None:
        self.name, self.group = opts.neo4j_sink, opts.neo4j_group
        self.topics = (f"{opts.topic_prefix}.entities", f"{opts.topic_prefix}.relations")
        self.opts = opts
        self.driver = GraphDatabase.driver(opts.neo4j.uri, auth=opts.neo4j.auth(), notifications_min_severity="OFF")

    def position(self) -> SinkPosition | None:
        records, _, _ = self.driver.execute_query(
            f"MATCH (p:`{self.opts.position_label}` {{sink: $sink}}) RETURN p.position AS position",
            sink=self.name, database_=self.opts.neo4j.database,
        )  # fmt: skip
        return SinkPosition.from_json(records[0]["position"]) if records and records[0]["position"] else None

    def quick_check(self, store: Path, sample: int) -> list[str]:
        """Counts, then ``sample`` entities (and their relations) field by field. Blocks ~100 ms."""
        problems = self._count_check(store)
        if problems:
            return problems
        return validate_store(store, self.opts, targets=("neo4j",), fast=True, sample=sample, search=False)

    def full_check(self, store: Path) -> list[str]:
        """Every entity and relation compared with the store, field by field. Blocks (a full read)."""
        return validate_store(store, self.opts, targets=("neo4j",), full=True, search=False)

    def _count_check(self, store: Path) -> list[str]:
        entities, relations = _store_counts(store)
        label = self.opts.entity_label.replace("`", "``")
        records, _, _ = self.driver.execute_query(
            f"MATCH (n:`{label}`) WHERE NOT coalesce(n._placeholder, false) "
            f"OPTIONAL MATCH (n)-[r]->(:`{label}`) RETURN count(DISTINCT n) AS nodes, count(r) AS rels",
            database_=self.opts.neo4j.database,
        )
        nodes, rels = int(records[0]["nodes"]), int(records[0]["rels"])
        problems = []
        if nodes != entities:
            problems.append(f"{self.name}: {nodes} entities, the store has {entities}")
        if rels != relations:
            problems.append(f"{self.name}: {rels} relations, the store has {relations}")
        return problems

    def close(self) -> None:
        self.driver.close()


class QdrantTarget:
    """The Qdrant sink: position point and a count check."""

    def __init__(self, opts: TargetOptions) -> None:
        self.name, self.group = opts.qdrant_sink, opts.qdrant_group
        self.topics = (f"{opts.topic_prefix}.entities", f"{opts.topic_prefix}.embeddings")
        self.opts = opts
        self._client: Any = None

    @property
    def client(self) -> Any:  # noqa: ANN401 - qdrant_client is imported lazily (heavy)
        if self._client is None:
            settings = self.opts.qdrant
            self._client = (
                QdrantClient(url=settings.url, api_key=self.opts.qdrant_api_key) if settings.url
                else QdrantClient(path=str(settings.path))
            )  # fmt: skip
        return self._client

    def _from_sink(self) -> dict[str, Any]:
        url = f"{self.opts.qdrant_endpoint}/position"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # an operator-given URL
                data: dict[str, Any] = json.load(response)
        except (OSError, ValueError) as exc:
            raise ReplicatorError(
                f"the Qdrant sink at {url} did not answer: {exc}", hint="is `replicator sink qdrant` running?"
            ) from exc
        return data

    def position(self) -> SinkPosition | None:
        if self.opts.qdrant_endpoint:
            raw = self._from_sink().get("position")
            return SinkPosition.from_json(json.dumps(raw)) if raw else None
        collection = f"{self.opts.collection}_positions"
        if not self.client.collection_exists(collection):
            return None
        point_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "replicator:" + self.name))
        points = self.client.retrieve(collection, ids=[point_id], with_payload=True)
        if not points or not points[0].payload:
            return None
        return SinkPosition.from_json(points[0].payload["position"])

    def quick_check(self, store: Path, sample: int) -> list[str]:
        entities, _ = _store_counts(store)
        if self.opts.qdrant_endpoint:
            points = int(self._from_sink().get("destination", {}).get("entities", -1))
        else:
            points = int(self.client.count(self.opts.collection, exact=True).count)
        return [] if points == entities else [f"{self.name}: {points} points, the store has {entities} entities"]

    def full_check(self, store: Path) -> list[str]:
        """Every point compared with the store (payload and vector). With ``--qdrant-endpoint`` (local
        mode held by the running sink) only the counts can be read. Blocks (a full read)."""
        if self.opts.qdrant_endpoint:
            return self.quick_check(store, 0)
        self.close()  # validation opens its own client (local mode: one per storage directory)
        return validate_store(store, self.opts, targets=("qdrant",), full=True, search=False)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def sinks_for(kinds: Sequence[str], opts: TargetOptions) -> list[Neo4jTarget | QdrantTarget]:
    return [Neo4jTarget(opts) if kind == "neo4j" else QdrantTarget(opts) for kind in kinds]


def divergence(store: Path, opts: TargetOptions) -> Callable[[str], list[str]]:
    """For rollback: every difference between the store and the cutover's target(s)."""

    def check(target: str) -> list[str]:
        kinds = ("neo4j", "qdrant") if target == "hybrid" else (target,)
        problems: list[str] = []
        for each in sinks_for(kinds, opts):
            try:
                problems.extend(each.full_check(store))
            finally:
                each.close()
        return problems

    return check
