"""The Cypher of the Neo4j sink's statements (the planner's rows run through them as ``UNWIND $rows
AS row``, with ``$ns`` and ``$store``). The rules they hold are the planner's (planner.py); labels and
types are quoted identifiers from the model, values always parameters. Pure: text only."""

from __future__ import annotations

from typing import Final

from replicator.sinks.neo4j.layout import MCP, MEMORY_LABEL
from replicator.sinks.neo4j.model import GraphModel, quote

#: An entity deleted with at most this many relationships is detached at once; more make it a
#: detaching node, emptied by upkeep. Bounds one statement to DETACH_AT_ONCE x batch size deletions.
DETACH_AT_ONCE: Final = 100


# --- Cypher. Labels and types are quoted identifiers from the model; values are always parameters.


def _audit(model: GraphModel, var: str, prior: str | None = None) -> str:
    if not model.audit:
        return ""
    base = prior if prior is not None else f"coalesce({var}._applied, [])"
    return f", {var}._applied = {base} + row.seq"


def tombstone_match(model: GraphModel, var: str, kind: str, id_expr: str) -> str:
    """The tombstone pattern of one row of this namespace and store (design §6)."""
    return f"({var}:{quote(model.tombstone_label)} {{ns: $ns, store: $store, kind: '{kind}', id: {id_expr}}})"


def _memory(model: GraphModel, var: str, verb: str) -> str:
    """`` SET var:Memory`` (or REMOVE) in the mcp layout: only entity nodes carry the server's label."""
    return f" {verb} {var}:{quote(MEMORY_LABEL)}" if model.layout == MCP else ""


def entity_upsert_query(model: GraphModel, guarded: bool = True) -> str:
    """Upsert entities; ``guarded``: only those no tombstone of theirs stops (else the plan proved it)."""
    ent = quote(model.entity_label)
    guard = (
        f"OPTIONAL MATCH {tombstone_match(model, 't', 'entity', 'row.id')} "
        "WITH row, t WHERE t IS NULL OR t._seq < row.seq "
    )
    return (
        "UNWIND $rows AS row " + (guard if guarded else "") + f"MERGE (n:{ent} {{id: row.id}}) "
        "WITH n, row WHERE n._seq IS NULL OR n._seq < row.seq "
        f"SET n += row.props, n._seq = row.seq{_audit(model, 'n')}{_memory(model, 'n', 'SET')} "
        "REMOVE n._placeholder"
    )


def _tombstone(model: GraphModel, kind: str) -> str:
    return (
        f"MERGE {tombstone_match(model, 't', kind, 'row.id')} "
        "ON CREATE SET t._seq = row.seq "
        "ON MATCH SET t._seq = CASE WHEN t._seq < row.seq THEN row.seq ELSE t._seq END "
    )


def detach_or_hide(model: GraphModel, node: str, seq: str) -> str:
    """Delete ``node`` with its relationships if it has at most DETACH_AT_ONCE of them; otherwise
    take it out of the entity label at once (readers see neither it nor its relationships) as a
    detaching node that upkeep empties and deletes, a bounded number of relationships at a time."""
    ent, tomb = quote(model.entity_label), quote(model.tombstone_label)
    return (
        f"WITH {node}, {seq} AS dseq, COUNT {{ ({node})--() }} AS degree "
        f"FOREACH (_ IN CASE WHEN degree <= {DETACH_AT_ONCE} THEN [1] ELSE [] END | DETACH DELETE {node}) "
        f"FOREACH (_ IN CASE WHEN degree > {DETACH_AT_ONCE} THEN [1] ELSE [] END | "
        f"SET {node} = {{ns: $ns, detaching: {node}.id, _seq: dseq}} "
        f"REMOVE {node}:{ent}{_memory(model, node, 'REMOVE')} SET {node}:{tomb})"
    )


def _seek(model: GraphModel, var: str, id_expr: str) -> str:
    """MATCH one entity node by id through the unique index. The hint keeps the planner from ever
    choosing a scan (it did, once, on a graph whose index statistics lagged behind a bulk load)."""
    ent = quote(model.entity_label)
    return f"MATCH ({var}:{ent} {{id: {id_expr}}}) USING INDEX SEEK {var}:{ent}(id) "


def entity_delete_query(model: GraphModel) -> str:
    return (
        "UNWIND $rows AS row "
        + _tombstone(model, "entity")
        + "WITH row "
        + _seek(model, "n", "row.id")
        + "WHERE n._seq IS NULL OR n._seq < row.seq "
        + detach_or_hide(model, "n", "row.seq")
    )


def _find_relationship(model: GraphModel, var: str) -> str:
    """``var``: the relationship with id ``row.id`` between one of ``row.pairs``' endpoints: both
    endpoints bound by unique-index seeks first, then the relationships of the endpoint with the lower
    degree (``COUNT`` of a bound node's relationships is a degree read) are expanded, keeping the one
    that ends at the other endpoint, so a hub's other relationships are never read. The expansion
    starts from a bound node with its other end unbound and compared by ``elementId``, which leaves the
    planner nothing to choose: given the pair bound at both ends (a pattern comprehension ``(a0)-[x]->(b0)``)
    it planned a scan of every relationship of the database on a label whose index statistics lagged
    its bulk load (every fresh graph, for its first seconds: ~2-4 s per batch of 1,000)."""
    return (
        "UNWIND row.pairs AS pair "
        + _seek(model, "a0", "pair[0]")
        + _seek(model, "b0", "pair[1]")
        + "UNWIND CASE WHEN COUNT { (a0)-->() } <= COUNT { ()-->(b0) } "
        "THEN [(a0)-[x]->(o) WHERE x.id = row.id AND elementId(o) = elementId(b0) | x] "
        f"ELSE [(o)-[x]->(b0) WHERE x.id = row.id AND elementId(o) = elementId(a0) | x] END AS {var} "
    )


def relation_delete_query(model: GraphModel) -> str:
    return (
        "UNWIND $rows AS row "
        + _tombstone(model, "relation")
        + "WITH row "
        + _find_relationship(model, "r")
        + "WITH r, row WHERE r._seq < row.seq DELETE r"
    )


def relation_delete_unlocated_query(model: GraphModel) -> str:
    """Tombstones without endpoints: one scan of the namespace's relationships for the whole batch."""
    ent = quote(model.entity_label)
    return (
        "UNWIND $rows AS row " + _tombstone(model, "relation") + "WITH collect(row) AS rows "
        f"MATCH (:{ent})-[r]->() WHERE r.id IN [x IN rows | x.id] "
        "WITH r, [x IN rows WHERE x.id = r.id][0] AS row WHERE r._seq < row.seq "
        "DELETE r"
    )


def relation_upsert_query(model: GraphModel, rel_type: str | None, guarded: bool = True) -> str:
    """Upsert relations of one mapped type, or (``rel_type`` None, Neo4j 5.26+) of the type each row
    names in ``row.type``. ``guarded``: only those no tombstone stops (of the relation, or of an
    endpoint, newer than the change); unguarded rows are those the plan proved no tombstone can stop."""
    ent = quote(model.entity_label)
    created = "$(row.type)" if rel_type is None else quote(rel_type)
    guard = (
        f"OPTIONAL MATCH {tombstone_match(model, 'tr', 'relation', 'row.id')} "
        f"OPTIONAL MATCH {tombstone_match(model, 'tf', 'entity', 'row.from')} "
        f"OPTIONAL MATCH {tombstone_match(model, 'tt', 'entity', 'row.to')} "
        "WITH row, tr, tf, tt "
        "WHERE (tr IS NULL OR tr._seq < row.seq) AND (tf IS NULL OR tf._seq < row.seq) "
        "AND (tt IS NULL OR tt._seq < row.seq) "
    )
    return (
        "UNWIND $rows AS row "
        + (guard if guarded else "")
        + "CALL (row) { "
        + _find_relationship(model, "old")
        + "RETURN collect(DISTINCT old) AS olds } "
        "WITH row, olds WHERE all(o IN olds WHERE o._seq < row.seq) "
        "WITH row, olds, CASE WHEN size(olds) = 0 THEN [] ELSE coalesce(olds[0]._applied, []) END AS prior "
        "FOREACH (o IN olds | DELETE o) "
        f"MERGE (a:{ent} {{id: row.from}}) ON CREATE SET a._placeholder = true "
        f"MERGE (b:{ent} {{id: row.to}}) ON CREATE SET b._placeholder = true "
        f"CREATE (a)-[r:{created}]->(b) "
        f"SET r = row.props, r.id = row.id, r._seq = row.seq{_audit(model, 'r', 'prior')}"
    )
