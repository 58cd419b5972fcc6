"""The pure half of the Neo4j sink: a Batch of change events in, Cypher statements with parameter rows
out. No driver, no I/O, so every rule here is unit-tested without a server.

The rules (design §6), one ``_seq`` per node, relationship and tombstone. Every statement runs with
``$ns`` (the namespace: the entity label) and ``$store`` (the store identity owning it, checked by the
applier): tombstones are keyed ``(ns, store, kind, id)``, so pipelines sharing a database never see
each other's deletes, and every ``_seq`` compared comes from the one store the namespace replicates.

* A change with seq ``s`` to a row writes it iff the stored ``_seq`` is null (absent row, or a
  placeholder) or ``s > _seq``, and no tombstone of that row has ``_seq >= s``. Snapshot events carry
  the snapshot's head W for every row and each row appears once in a snapshot, so "strictly newer"
  holds for them too; stream events after the snapshot have seqs > W. Replays and duplicates
  therefore change nothing, and a batch re-applied after a crash is harmless.
* A delete with seq ``s`` (a ``d`` event, or a Kafka tombstone: what compaction leaves of a deleted
  key, its seq in the ``replicator.seq`` header) keeps (or raises to ``s``) a tombstone; the node or
  relationship goes iff its ``_seq`` is null or ``< s``. Deletes stay bounded: an entity with at most
  ``DETACH_AT_ONCE`` relationships is detached and deleted at once; a hub instead leaves the entity
  label at once (readers no longer see it or its relationships) and becomes a *detaching* node whose
  relationships ``upkeep`` deletes a bounded number per transaction.
* A relation whose endpoint has not arrived MERGEs ``(:Entity {id, _placeholder: true})``; the
  entity's own event fills it later. A relation is not written at all if either endpoint has a
  tombstone with ``_seq >= s``: it was deleted after the relation's change, so nothing resurrects.
* Within a batch only the last change per row counts (per-key order = offset order = seq order, and
  every event carries the whole row), so one statement touches each row once.
* Relationship types: on Neo4j 5.26 and later every relation upsert of a batch is ONE statement
  (``CREATE ()-[:$(row.type)]->()``, the mapped type as a parameter); before 5.26 types cannot be
  parameters, and upserts are one statement per mapped type, backtick-quoted. Every value (including
  the exact ``relation_type`` text) is a parameter either way.

A relationship is found by its id through its endpoints: every ``(from, to)`` pair the batch's images
name for it. Both endpoints are seeks on the unique ``id``, and the relationships of the endpoint
with the lower degree are expanded (``_find_relationship``), so a hub's other relationships are never
scanned (PROFILE in docs/sinks.md). Neo4j Community has no relationship index across types, and the types are derived
from free text. A tombstone without images (compaction removed its ``d``) has no pair: those are
found by one scan of the namespace's relationships per batch. Caxton never moves a relation to other
endpoints; if a store did, a replay of an older change after the move could leave a stale copy.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any, Final

from replicator.events.avro import ENTITY_CHANGE, RELATION_CHANGE
from replicator.position import SinkPosition
from replicator.sinks.batch import Batch, Event
from replicator.sinks.errors import PoisonEvent
from replicator.sinks.neo4j.layout import MCP, MEMORY_LABEL, node_props
from replicator.sinks.neo4j.model import GraphModel, quote, relationship_type
from replicator.store.schema import ENTITY_COLUMNS, RELATION_COLUMNS

Row = dict[str, Any]

_ENTITY_FIELDS = ENTITY_COLUMNS[1:]  # the id is the node's key
_RELATION_FIELDS = tuple(c for c in RELATION_COLUMNS[1:] if c not in ("from_entity_id", "to_entity_id"))
_KIND_OF_TABLE: Final = {"entities": "entity", "relations": "relation"}
_KIND_OF_SCHEMA: Final = {ENTITY_CHANGE: "entity", RELATION_CHANGE: "relation"}
#: An entity deleted with at most this many relationships is detached at once; more make it a
#: detaching node, emptied by upkeep. Bounds one statement to DETACH_AT_ONCE x batch size deletions.
DETACH_AT_ONCE: Final = 100


@dataclass(frozen=True)
class Statement:
    """One Cypher statement run as ``UNWIND $rows AS row ...`` (with ``$ns``, ``$store``)."""

    query: str
    rows: list[Row]


@dataclass
class Plan:
    """What a batch does to the graph, in the order the applier runs it."""

    #: The store the batch's events come from (None: only tombstones); the applier checks it owns ns.
    store: str | None = None
    entity_upserts: list[Row] = field(default_factory=list)
    entity_deletes: list[Row] = field(default_factory=list)
    relation_deletes: list[Row] = field(default_factory=list)
    #: Relation tombstones whose endpoints no image of the batch names (their ``d`` was compacted).
    relation_deletes_unlocated: list[Row] = field(default_factory=list)
    relation_upserts: dict[str, list[Row]] = field(default_factory=dict)  # by relationship type
    #: Tombstones that cannot be applied: no ``replicator.seq`` header (not written by this source).
    unusable_tombstones: int = 0

    @property
    def size(self) -> int:
        return (
            len(self.entity_upserts)
            + len(self.entity_deletes)
            + len(self.relation_deletes)
            + len(self.relation_deletes_unlocated)
            + sum(len(rows) for rows in self.relation_upserts.values())
        )

    def statements(self, model: GraphModel, dynamic_types: bool = False) -> list[Statement]:
        """Statements in dependency order: entities first (so relations find them), relation deletes
        (before entity deletes: a hub whose relation deletes share its batch is detached by them),
        entity deletes (their tombstones stop older relation creates), relation upserts: one
        statement for all types when the server takes types as parameters (``dynamic_types``, Neo4j
        5.26+), else one per type (each row is one relation: their order does not matter)."""
        out = []
        if self.entity_upserts:
            out.append(Statement(entity_upsert_query(model), self.entity_upserts))
        if self.relation_deletes:
            out.append(Statement(relation_delete_query(model), self.relation_deletes))
        if self.relation_deletes_unlocated:
            out.append(Statement(relation_delete_unlocated_query(model), self.relation_deletes_unlocated))
        if self.entity_deletes:
            out.append(Statement(entity_delete_query(model), self.entity_deletes))
        types = sorted(self.relation_upserts)
        if dynamic_types and types:
            rows = [row for rel_type in types for row in self.relation_upserts[rel_type]]
            return [*out, Statement(relation_upsert_query(model, None), rows)]
        for rel_type in types:
            out.append(Statement(relation_upsert_query(model, rel_type), self.relation_upserts[rel_type]))
        return out


def _poison(index: int, event: Event, reason: str) -> PoisonEvent:
    return PoisonEvent(index, f"{event.topic}/{event.partition}@{event.offset}: {reason}")


def _image(index: int, event: Event, which: str) -> dict[str, Any]:
    assert event.record is not None
    image = event.record.get(which)
    if not isinstance(image, dict):
        raise _poison(index, event, f"op {event.record['op']!r} needs a {which!r} image, got none")
    if event.key is not None and int(image["id"]) != event.key:
        raise _poison(index, event, f"{which}.id {image['id']} differs from the message key {event.key}")
    return image


def _extra(image: dict[str, Any]) -> str | None:
    # Neo4j properties cannot hold maps: drifted columns are kept as one JSON text, nothing dropped.
    extra = image.get("extra")
    return None if not extra else json.dumps(extra, sort_keys=True)


@dataclass
class _Rows:
    """Per row: the last event that counts (batch index, event) and every endpoint pair seen."""

    last: dict[tuple[str, int], Event] = field(default_factory=dict)
    pairs: dict[int, set[tuple[int, int]]] = field(default_factory=dict)
    unusable: int = 0


def _collect(batch: Batch) -> _Rows:
    rows = _Rows()
    for index, event in enumerate(batch.events):
        if event.is_tombstone:
            kind = _KIND_OF_TABLE.get(event.headers.table or "")
            if kind is None:
                continue  # an embedding's tombstone: not this sink's
            if event.headers.seq is None:
                rows.unusable += 1
                continue
            assert event.key is not None
            rows.last[(kind, event.key)] = event
            continue
        if event.record is None or event.is_heartbeat or event.schema not in _KIND_OF_SCHEMA:
            continue
        op = event.record.get("op")
        if op not in ("c", "u", "d", "r"):
            raise _poison(index, event, f"unknown op {op!r}")
        # A d names its row by the key when it has no before image, a u may have none (capture v5,
        # docs/events.md): the before image, where present, only adds the endpoints to look at.
        images = [] if op == "d" else [_image(index, event, "after")]
        if op in ("u", "d") and (event.record.get("before") is not None or (op == "d" and event.key is None)):
            images.append(_image(index, event, "before"))
        kind = _KIND_OF_SCHEMA[str(event.schema)]
        row_id = int(images[0]["id"]) if images else int(event.key or 0)
        if kind == "relation":
            found = rows.pairs.setdefault(row_id, set())
            found.update((int(i["from_entity_id"]), int(i["to_entity_id"])) for i in images)
        rows.last[(kind, row_id)] = event
    return rows


def plan(batch: Batch, model: GraphModel, stored: SinkPosition | None = None) -> Plan:
    """Turn a batch into a Plan, leaving out the events ``stored`` (the destination's position)
    already covers. Pure. Raises PoisonEvent(index into batch.events) for a change that breaks the
    envelope's rules (a missing image, an id that differs from the key, an unknown op), and
    StoreMismatch when the batch holds events of two stores. Embedding changes are not this sink's
    and are ignored, like heartbeats; tombstones are deletes (``unusable_tombstones`` counts those
    without a seq header)."""
    store = batch.store()  # of every event: one of another store is a misconfiguration even if applied
    rows = _collect(batch.unapplied(stored))
    result = Plan(store=store, unusable_tombstones=rows.unusable)
    for (kind, row_id), event in rows.last.items():
        seq = event.seq
        assert seq is not None
        deleted = event.is_tombstone or (event.record is not None and event.record["op"] == "d")
        if kind == "entity":
            if deleted:
                result.entity_deletes.append({"id": row_id, "seq": seq})
            else:
                result.entity_upserts.append({"id": row_id, "seq": seq, "props": _entity_props(event, model)})
            continue
        pairs = [list(p) for p in sorted(rows.pairs.get(row_id, ()))]
        if deleted:
            target = result.relation_deletes if pairs else result.relation_deletes_unlocated
            target.append({"id": row_id, "seq": seq, "pairs": pairs})
            continue
        assert event.record is not None
        after = event.record["after"]
        rel_type = relationship_type(after["relation_type"])
        result.relation_upserts.setdefault(rel_type, []).append(
            {
                "id": row_id,
                "seq": seq,
                "type": rel_type,
                "from": int(after["from_entity_id"]),
                "to": int(after["to_entity_id"]),
                "pairs": pairs,
                "props": _relation_props(after, model),
            }
        )
    return result


@functools.lru_cache(maxsize=64)
def _names(model: GraphModel, fields: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(graph property, store column) for ``fields``: the renaming done once per model, not per row."""
    return tuple((model.renamed(f), f) for f in fields)


def _entity_props(event: Event, model: GraphModel) -> Row:
    assert event.record is not None
    after = event.record["after"]
    # Every value as the event carries it (docs/events.md, "Values"): Neo4j holds each storage class
    # natively (float inf, byte arrays, a list or a string of observations); None removes the property.
    props: Row = {name: after.get(f) for name, f in _names(model, _ENTITY_FIELDS)}
    props["extra"] = _extra(after)
    return node_props(model.layout, props)


def _relation_props(after: dict[str, Any], model: GraphModel) -> Row:
    props: Row = {name: after.get(f) for name, f in _names(model, _RELATION_FIELDS)}
    props["extra"] = _extra(after)
    return props


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


def entity_upsert_query(model: GraphModel) -> str:
    ent = quote(model.entity_label)
    return (
        "UNWIND $rows AS row "
        f"OPTIONAL MATCH {tombstone_match(model, 't', 'entity', 'row.id')} "
        "WITH row, t WHERE t IS NULL OR t._seq < row.seq "
        f"MERGE (n:{ent} {{id: row.id}}) "
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


def relation_upsert_query(model: GraphModel, rel_type: str | None) -> str:
    """Upsert relations of one mapped type, or (``rel_type`` None, Neo4j 5.26+) of the type each row
    names in ``row.type``."""
    ent = quote(model.entity_label)
    created = "$(row.type)" if rel_type is None else quote(rel_type)
    return (
        "UNWIND $rows AS row "
        f"OPTIONAL MATCH {tombstone_match(model, 'tr', 'relation', 'row.id')} "
        f"OPTIONAL MATCH {tombstone_match(model, 'tf', 'entity', 'row.from')} "
        f"OPTIONAL MATCH {tombstone_match(model, 'tt', 'entity', 'row.to')} "
        "WITH row, tr, tf, tt "
        "WHERE (tr IS NULL OR tr._seq < row.seq) AND (tf IS NULL OR tf._seq < row.seq) "
        "AND (tt IS NULL OR tt._seq < row.seq) "
        "CALL (row) { " + _find_relationship(model, "old") + "RETURN collect(DISTINCT old) AS olds } "
        "WITH row, olds WHERE all(o IN olds WHERE o._seq < row.seq) "
        "WITH row, olds, CASE WHEN size(olds) = 0 THEN [] ELSE coalesce(olds[0]._applied, []) END AS prior "
        "FOREACH (o IN olds | DELETE o) "
        f"MERGE (a:{ent} {{id: row.from}}) ON CREATE SET a._placeholder = true "
        f"MERGE (b:{ent} {{id: row.to}}) ON CREATE SET b._placeholder = true "
        f"CREATE (a)-[r:{created}]->(b) "
        f"SET r = row.props, r.id = row.id, r._seq = row.seq{_audit(model, 'r', 'prior')}"
    )
