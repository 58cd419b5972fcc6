"""``replicator tune``: the guide's post-migration optimisation ("Performance Optimization", and the
composite index of its troubleshooting section), for the graph and the collection the sinks wrote.

Neo4j: range indexes on the entity label's ``name``, ``entity_type`` and confidence property, the
composite (``name``, ``entity_type``), and the strength property of every relationship type between
entities. The guide writes the last one as ``FOR ()-[r]-() ON (r.strength)``, which Neo4j 5 refuses
(a relationship index names its type), so there is one per type found; a type that appears later
gets its index when tune runs again. Then the statistics are refreshed
(``db.resampleOutdatedIndexes``) for the query planner. Index names carry the entity label, so
several pipelines on one database do not collide.

Qdrant: payload indexes on the fields agents filter on: ``name`` and ``entity_type`` (keyword),
``confidence`` (float), ``updated_at`` (integer). Qdrant's local mode accepts and ignores payload
indexes (it has none); a server builds them.

Idempotent (``IF NOT EXISTS``; an existing payload index is left alone) and safe on a live database:
Neo4j populates a new index in the background without locking writers, Qdrant likewise. Every
name comes from the sink's GraphModel, the owner of the graph's names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from replicator.errors import ConfigError
from replicator.sinks.neo4j.model import GraphModel, quote

#: Payload field -> Qdrant schema type, the fields an agent's filter names.
PAYLOAD_INDEXES: Final = {"name": "keyword", "entity_type": "keyword", "confidence": "float", "updated_at": "integer"}
_AWAIT_S: Final = 300


@dataclass(frozen=True)
class Step:
    """One statement of the plan, and what running it found."""

    name: str
    statement: str
    #: planned (--dry-run) | created | present | refreshed | local-mode (Qdrant local mode has no payload indexes)
    outcome: str = "planned"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "statement": self.statement, "outcome": self.outcome}


def index_name(model: GraphModel, what: str) -> str:
    return f"replicator_{model.entity_label}_{what}"  # exact: labels and types are case-sensitive


def node_indexes(model: GraphModel) -> list[Step]:
    """The node indexes for ``model``'s entity label. Pure."""
    label = quote(model.entity_label)
    wanted = {
        "name": ["name"],
        "entity_type": ["entity_type"],
        "confidence": [model.confidence_property],
        "name_type": ["name", "entity_type"],  # the guide's entity_search_idx
    }
    steps = []
    for what, props in wanted.items():
        name = index_name(model, what)
        on = ", ".join(f"e.{quote(p)}" for p in props)
        steps.append(Step(name, f"CREATE INDEX {quote(name)} IF NOT EXISTS FOR (e:{label}) ON ({on})"))
    return steps


def relationship_indexes(model: GraphModel, types: Sequence[str]) -> list[Step]:
    """One strength index per relationship type. Pure."""
    steps = []
    for rel_type in sorted(types):
        name = index_name(model, f"{rel_type}_strength")
        on = f"ON (r.{quote(model.strength_property)})"
        statement = f"CREATE INDEX {quote(name)} IF NOT EXISTS FOR ()-[r:{quote(rel_type)}]-() {on}"
        steps.append(Step(name, statement))
    return steps


def relationship_types(session: Any, model: GraphModel) -> list[str]:  # noqa: ANN401 - a neo4j Session
    """The relationship types between entities of ``model`` (read from the graph; blocks)."""
    label = quote(model.entity_label)
    query = f"MATCH (:{label})-[r]->(:{label}) RETURN DISTINCT type(r) AS t"
    return [str(r["t"]) for r in session.run(query)]


def tune_neo4j(driver: Any, database: str, model: GraphModel, *, dry_run: bool) -> list[Step]:  # noqa: ANN401
    """Plan (``dry_run``) or create the indexes, wait until they are online, refresh statistics.
    Blocks; idempotent. Raises the driver's errors (the CLI names them)."""
    with driver.session(database=database) as session:
        plan = node_indexes(model) + relationship_indexes(model, relationship_types(session, model))
        refresh = Step("statistics", "CALL db.resampleOutdatedIndexes()")
        if dry_run:
            return [*plan, refresh]
        existing = {str(r["name"]) for r in session.run("SHOW INDEXES YIELD name")}
        done = []
        for step in plan:
            session.run(step.statement).consume()
            done.append(Step(step.name, step.statement, "present" if step.name in existing else "created"))
        session.run(f"CALL db.awaitIndexes({_AWAIT_S})").consume()
        session.run(refresh.statement).consume()
        return [*done, Step(refresh.name, refresh.statement, "refreshed")]


def tune_qdrant(client: Any, collection: str, *, dry_run: bool, local: bool) -> list[Step]:  # noqa: ANN401
    """Plan or create the payload indexes of ``collection`` (``client`` a QdrantClient). In local mode
    (``local``) nothing is created: it has no payload indexes, and says so. Blocks; idempotent.
    Raises ConfigError for a missing collection."""
    from qdrant_client import models  # noqa: PLC0415 - only when Qdrant is tuned

    if not client.collection_exists(collection):
        raise ConfigError(
            f"Qdrant has no collection {collection!r} to tune",
            hint="pass the sink's --collection (default caxton_embeddings), after the sink has created it",
        )
    schema = client.get_collection(collection).payload_schema or {}
    steps = []
    for field, kind in PAYLOAD_INDEXES.items():
        statement = f"create_payload_index({collection!r}, {field!r}, {kind})"
        if dry_run or local:
            steps.append(Step(f"{collection}.{field}", statement, "planned" if dry_run else "local-mode"))
            continue
        if field in schema:
            steps.append(Step(f"{collection}.{field}", statement, "present"))
            continue
        client.create_payload_index(collection, field, field_schema=models.PayloadSchemaType(kind), wait=True)
        steps.append(Step(f"{collection}.{field}", statement, "created"))
    return steps


def format_steps(title: str, steps: Sequence[Step]) -> str:
    lines = [title]
    lines += [f"  {s.outcome:<9} {s.name}\n            {s.statement}" for s in steps]
    return "\n".join(lines)
