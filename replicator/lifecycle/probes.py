"""The reads ``watch`` makes, against each backend: open an entity by name, its neighbours, a
semantic search (top ``K``). Each returns the entity ids it found, so the monitor can tell where the
new backend answers differently from the store. Names of the graph come from the sink's GraphModel
and the payload's from the Qdrant sink's points module (the owners of those formats).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np

from replicator.events.values import embedding_text
from replicator.lifecycle.assess import scan
from replicator.lifecycle.watch import STORE, Probe, Sample
from replicator.sinks.neo4j.model import GraphModel, quote
from replicator.validation.store import StoreReader

K: Final = 10


def store_probes(store: StoreReader, search: bool) -> list[Probe]:
    """Reads against the store file (read-only connection)."""

    def by_name(s: Sample) -> frozenset[int]:
        return frozenset(int(r[0]) for r in store.conn.execute("SELECT id FROM entities WHERE name = ?", (s.name,)))

    def neighbours(s: Sample) -> frozenset[int]:
        rows = store.conn.execute(
            "SELECT r.to_entity_id FROM relations r JOIN entities e ON e.id = r.from_entity_id WHERE e.name = ? "
            "UNION SELECT r.from_entity_id FROM relations r JOIN entities e ON e.id = r.to_entity_id WHERE e.name = ?",
            (s.name, s.name),
        )
        return frozenset(int(r[0]) for r in rows)

    def nearest(s: Sample) -> frozenset[int]:
        assert s.vector is not None
        return frozenset(scan(store, np.asarray(s.vector, dtype=np.float32), K)[0])

    probes = [Probe(STORE, "by_name", by_name), Probe(STORE, "neighbours", neighbours)]
    return probes + ([Probe(STORE, "search", nearest)] if search else [])


def neo4j_probes(driver: Any, database: str, model: GraphModel) -> list[Probe]:  # noqa: ANN401 - a neo4j Driver
    label = quote(model.entity_label)

    def by_name(s: Sample) -> frozenset[int]:
        records, _, _ = driver.execute_query(
            f"MATCH (e:{label} {{name: $name}}) RETURN e.id AS id", name=s.name, database_=database
        )
        return frozenset(int(r["id"]) for r in records)

    def neighbours(s: Sample) -> frozenset[int]:
        records, _, _ = driver.execute_query(
            f"MATCH (:{label} {{name: $name}})-[]-(n:{label}) RETURN DISTINCT n.id AS id",
            name=s.name,
            database_=database,
        )
        return frozenset(int(r["id"]) for r in records)

    return [Probe("neo4j", "by_name", by_name), Probe("neo4j", "neighbours", neighbours)]


def qdrant_probes(client: Any, collection: str, layout: str, search: bool) -> list[Probe]:  # noqa: ANN401 - a QdrantClient
    """Reads of a collection in ``layout``: the search uses the layout's vector (named in the mcp
    layout), and only the sink's entity points count (an MCP client's points are not the store's)."""
    from qdrant_client import models  # noqa: PLC0415

    from replicator.sinks.qdrant import layout as qlayout  # noqa: PLC0415 - qdrant_client is heavy
    from replicator.sinks.qdrant.reader import is_entity_point  # noqa: PLC0415

    def by_name(s: Sample) -> frozenset[int]:
        match = models.Filter(must=[models.FieldCondition(key="name", match=models.MatchValue(value=s.name))])
        points, _ = client.scroll(collection, scroll_filter=match, limit=K, with_payload=False, with_vectors=False)
        return frozenset(int(p.id) for p in points if is_entity_point(p.id))

    def nearest(s: Sample) -> frozenset[int]:
        assert s.vector is not None
        result = client.query_points(collection, query=list(s.vector), using=qlayout.vector_name(layout), limit=K,
                                     with_payload=False)  # fmt: skip
        return frozenset(int(p.id) for p in result.points if is_entity_point(p.id))

    return [Probe("qdrant", "by_name", by_name)] + ([Probe("qdrant", "search", nearest)] if search else [])


def samples(store: StoreReader, count: int, encode: Callable[[str], Sequence[float]] | None) -> list[Sample]:
    """Up to ``count`` entities drawn evenly from the store (deterministic), by name; with ``encode``,
    each with its embedding text's vector for the search."""
    rows = store.conn.execute("SELECT id, name, entity_type, observations FROM entities ORDER BY id").fetchall()
    step = max(1, len(rows) // max(count, 1))
    chosen = rows[::step][:count]
    if encode is None:
        return [Sample(str(r[1])) for r in chosen]
    return [Sample(str(r[1]), encode(embedding_text(r[1], r[2], r[3]))) for r in chosen]
