"""Reading back what the Neo4j sink writes (design §5, §6), for lag, validate, cutover and rollback.

The one reader of the graph layout, next to the planner that writes it and built from the same
:class:`GraphModel`: labels and the renamed properties (``--relation-type-property`` and friends)
are read under the names the sink wrote them, so a comparison with the store never sees a renamed
property as a difference. Placeholders are reported apart; tombstones, positions and detaching
nodes (no longer entity-labelled) are not entities.

A :class:`GraphReader` runs its queries through a ``Query`` callable, so a caller decides how each
call is bounded: :meth:`GraphReader.connect` (validate, diff, stats) owns a driver; cutover passes
its own query that gives every call what is left of the pause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import neo4j
from neo4j.exceptions import Neo4jError, ServiceUnavailable

from replicator.position import SinkPosition
from replicator.sinks.neo4j import layout
from replicator.sinks.neo4j.model import GraphModel, position_query, quote
from replicator.sinks.settings import Neo4jSettings
from replicator.validation.errors import MigrateError
from replicator.validation.model import Keys, Relation, Snapshot, entity_from_mapping

#: Runs one read: ``query(cypher, **params)`` -> its records. Raises what the driver raises (or MigrateError).
Query = Callable[..., list[neo4j.Record]]

# One record holding every row: a record per relationship cost the driver twice the client CPU.
_RELATION_RETURN = "RETURN collect([properties(r), type(r), a.id, b.id, a.name, b.name]) AS rows"


def relations_touching_query(model: GraphModel) -> str:
    """The relationships touching the entities ``$ids``: each found by its unique id index, then one
    expand. Written as ``a.id IN $ids OR b.id IN $ids`` it was planned as a scan of every relationship
    of the database (or of the label), once per page of a full comparison."""
    lab = quote(model.entity_label)
    return (f"MATCH (n:{lab}) WHERE n.id IN $ids WITH n MATCH (n)-[r]-(m:{lab}) WHERE r.id IS NOT NULL "
            f"WITH DISTINCT r WITH r, startNode(r) AS a, endNode(r) AS b {_RELATION_RETURN}")  # fmt: skip


class GraphReader:
    """The graph of one namespace as the Neo4j sink writes it. Blocks; raises what ``query`` raises."""

    def __init__(self, model: GraphModel, query: Query, close: Callable[[], None] | None = None) -> None:
        self.model = model
        self._run = query
        self._close = close

    @classmethod
    def connect(cls, settings: Neo4jSettings, model: GraphModel) -> GraphReader:
        """A reader owning a driver for ``settings`` (close() it). Raises MigrateError naming the server
        and the flags to check when it does not answer."""
        # The server's notifications (e.g. "property key does not exist" on a graph the sink has not
        # filled yet) are not the operator's business: the driver would print each one.
        driver = neo4j.GraphDatabase.driver(settings.uri, auth=settings.auth(), notifications_min_severity="OFF")
        try:
            driver.verify_connectivity()
        except (Neo4jError, ServiceUnavailable, OSError) as exc:
            driver.close()
            raise MigrateError(
                f"Neo4j at {settings.uri} is not answering ({exc})",
                hint="check --neo4j-uri / --neo4j-user and the password (REPLICATOR_NEO4J_PASSWORD or "
                "--neo4j-password-file)",
            ) from exc

        def query(cypher: str, **params: object) -> list[neo4j.Record]:
            try:
                records, _, _ = driver.execute_query(
                    cypher, parameters_=params, database_=settings.database, routing_=neo4j.RoutingControl.READ
                )
            except (Neo4jError, ServiceUnavailable) as exc:
                raise MigrateError(f"Neo4j query failed at {settings.uri}: {exc}", hint="is the server up?") from exc
            return list(records)

        return cls(model, query, driver.close)

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __enter__(self) -> GraphReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, cypher: str, **params: object) -> list[neo4j.Record]:
        """Records of a read query (for stats of labels beside the entities)."""
        return self._run(cypher, **params)

    def position(self, sink: str) -> SinkPosition | None:
        """The position the sink ``sink`` stored with its data (design §5), None before its first batch."""
        records = self._run(position_query(self.model), sink=sink)
        return SinkPosition.from_json(records[0]["position"]) if records and records[0]["position"] else None

    def counts(self) -> dict[str, int]:
        """Entities (placeholders apart) and relationships between entity nodes."""
        lab = quote(self.model.entity_label)
        [row] = self._run(
            f"MATCH (n:{lab}) RETURN count(CASE WHEN coalesce(n._placeholder, false) THEN null ELSE 1 END) AS e, "
            "count(CASE WHEN coalesce(n._placeholder, false) THEN 1 END) AS p"
        )
        [rel] = self._run(f"MATCH (:{lab})-[r]->(:{lab}) WHERE r.id IS NOT NULL RETURN count(r) AS r")
        return {"entities": int(row["e"]), "placeholders": int(row["p"]), "relations": int(rel["r"])}

    def fenced_counts(self) -> dict[str, int]:
        """:meth:`counts` in constant time, for the cutover's check under its fence (writers wait):
        entity nodes and relationships leaving them from Neo4j's count store, placeholders by an
        index seek (the sink's ``_placeholder`` index; a scan on graphs written before it existed).
        Unlike :meth:`counts`, ``relations`` also counts relationships without a Caxton id (an MCP
        client's writes): one more than the store then stops the cutover, which is safe, and the
        pre-check before the fence names such writes."""
        lab = quote(self.model.entity_label)
        [row] = self._run(  # one statement: one round trip while the writers wait
            f"RETURN COUNT {{ MATCH (n:{lab}) }} AS n, COUNT {{ MATCH (n:{lab}) WHERE n._placeholder = true }} AS p, "
            f"COUNT {{ MATCH (:{lab})-[r]->() }} AS r"
        )
        placeholders = int(row["p"])
        return {"entities": int(row["n"]) - placeholders, "placeholders": placeholders, "relations": int(row["r"])}

    def held_layout(self) -> str | None:
        """The layout the namespace was written in (its owner node), None before a sink's first batch."""
        rows = self._run(f"MATCH (o:{quote(self.model.position_label)} {{owner: $ns}}) "
                         "RETURN o.layout AS layout, o.store AS store", ns=self.model.namespace)  # fmt: skip
        if not rows or (rows[0]["layout"] is None and rows[0]["store"] is None):
            return None
        return str(rows[0]["layout"] or layout.CAXTON)  # written before layouts existed

    def check_layout(self) -> None:
        """Raises MigrateError naming both layouts when the namespace holds another than the model's:
        read in the wrong layout, every entity would look different."""
        held = self.held_layout()
        if held is not None and held != self.model.layout:
            raise MigrateError(
                f"Neo4j label {self.model.namespace!r} holds the {held} layout, not {self.model.layout}",
                hint=f"pass --layout {held} (or REPLICATOR_LAYOUT={held}), as the sink was run (docs/layouts.md)",
            )

    def foreign_writes(self, limit: int = 100) -> list[str]:
        """What a client of the mcp layout (mcp-neo4j-memory) wrote beside the sink, one line each:
        memory nodes and relationships of this namespace without a Caxton id (the sink writes an id on
        every one). Other changes (observations added, entities deleted) show as differences of the
        entities themselves. Empty in the caxton layout, which no such client reads."""
        if self.model.layout != layout.MCP:
            return []
        lab, mem = quote(self.model.entity_label), quote(layout.MEMORY_LABEL)
        nodes = self._run(
            f"MATCH (n:{mem}) WHERE n.id IS NULL RETURN n.name AS name, n.type AS type LIMIT $limit", limit=limit
        )
        lines = [
            f"neo4j: memory node {r['name']!r} (type {r['type']!r}) has no Caxton id: written through an MCP "
            "server, the store does not have it"
            for r in nodes
        ]
        rels = self._run(
            f"MATCH (a:{mem})-[r]->(b:{mem}) WHERE r.id IS NULL AND (a:{lab} OR b:{lab}) "
            "RETURN a.name AS a, type(r) AS t, b.name AS b LIMIT $limit",
            limit=limit,
        )
        lines += [
            f"neo4j: relationship ({r['a']!r})-[{r['t']}]->({r['b']!r}) has no Caxton id: written through an "
            "MCP server, the store does not have it"
            for r in rels
        ]
        return lines

    def tombstones(self) -> int:
        """Tombstone nodes under the model's tombstone label (every namespace's)."""
        [row] = self._run(f"MATCH (t:{quote(self.model.tombstone_label)}) RETURN count(t) AS n")
        return int(row["n"])

    def keys(self) -> Keys:
        lab = quote(self.model.entity_label)
        # One record per kind (collect skips nulls): a record per id cost the driver more than the ids.
        [nodes] = self._run(
            f"MATCH (n:{lab}) WITH n.id AS id, coalesce(n._placeholder, false) AS p "
            "RETURN collect(CASE WHEN p THEN null ELSE id END) AS e, collect(CASE WHEN p THEN id END) AS p"
        )
        [rels] = self._run(f"MATCH (:{lab})-[r]->(:{lab}) WHERE r.id IS NOT NULL RETURN collect(r.id) AS ids")
        return Keys(
            entities=frozenset(int(i) for i in nodes["e"]),
            relations=frozenset(int(i) for i in rels["ids"]),
            placeholders=frozenset(int(i) for i in nodes["p"]),
        )

    def read(self, entity_ids: Iterable[int] | None = None) -> Snapshot:
        """All entity nodes (or those with the given ids), the relationships touching them, and the
        ids of placeholder nodes among them, under the store's column names."""
        snap = Snapshot("neo4j")
        lab = quote(self.model.entity_label)
        where = "" if entity_ids is None else "WHERE n.id IN $ids"
        params: dict[str, Any] = {} if entity_ids is None else {"ids": sorted(set(entity_ids))}
        for r in self._run(f"MATCH (n:{lab}) {where} RETURN properties(n) AS p", **params):
            props = self.model.columns(layout.stored_props(self.model.layout, r["p"]))
            if props.get("_placeholder"):
                snap.placeholders.add(int(props["id"]))
            elif props.get("id") is not None:
                snap.entities[int(props["id"])] = entity_from_mapping(props)
        every = f"MATCH (a:{lab})-[r]->(b:{lab}) WHERE r.id IS NOT NULL {_RELATION_RETURN}"
        [rows] = self._run(every if entity_ids is None else relations_touching_query(self.model), **params)
        for row in rows["rows"]:
            rel = self._relation(row)
            snap.relations[rel.id] = rel
        return snap

    def read_relations(self, relation_ids: Iterable[int]) -> dict[int, Relation]:
        """The relationships (between entity-label nodes) with these ids; absent ids are left out."""
        ids = sorted(set(relation_ids))
        if not ids:
            return {}
        lab = quote(self.model.entity_label)
        found: dict[int, Relation] = {}
        [rows] = self._run(f"MATCH (a:{lab})-[r]->(b:{lab}) WHERE r.id IN $ids {_RELATION_RETURN}", ids=ids)
        for row in rows["rows"]:
            rel = self._relation(row)
            found[rel.id] = rel
        return found

    def _relation(self, row: Sequence[Any]) -> Relation:
        """A Relation from a row of ``_RELATION_RETURN``: relationship properties, its type, the endpoint
        ids, the endpoint names."""
        graph_props, graph_type, from_id, to_id, from_name, to_name = row
        props = self.model.columns(graph_props)
        return Relation(
            id=int(props["id"]),
            from_entity_id=int(from_id),
            to_entity_id=int(to_id),
            relation_type=layout.relation_type_of(props, graph_type),
            strength=props.get("strength"),
            confidence=props.get("confidence"),
            created_at=props.get("created_at"),
            updated_at=props.get("updated_at"),
            valid_from=props.get("valid_from"),
            valid_to=props.get("valid_to"),
            metadata=props.get("metadata"),
            from_name=from_name,
            to_name=to_name,
            graph_type=graph_type,
        )
