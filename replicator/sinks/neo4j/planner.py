"""The pure half of the Neo4j sink: a Batch of change events in, Cypher statements with parameter rows
out. No driver, no I/O, so every rule here is unit-tested without a server.

The rules (design §6), one ``_seq`` per node, relationship and tombstone:

* A change with seq ``s`` to a row writes it iff the stored ``_seq`` is null (absent row, or a
  placeholder) or ``s > _seq``, and no tombstone of that row has ``_seq >= s``. Snapshot events carry
  the snapshot's head W for every row and each row appears once in a snapshot, so "strictly newer"
  holds for them too; stream events after the snapshot have seqs > W. Replays and duplicates
  therefore change nothing, and a batch re-applied after a crash is harmless.
* A delete with seq ``s`` keeps (or raises to ``s``) a tombstone ``{kind, id, _seq}``; the node or
  relationship goes iff its ``_seq`` is null or ``< s``. Deleting an entity detaches its relations.
* A relation whose endpoint has not arrived MERGEs ``(:Entity {id, _placeholder: true})``; the
  entity's own event fills it later. A relation is not written at all if either endpoint has a
  tombstone with ``_seq >= s``: it was deleted after the relation's change, so nothing resurrects.
* Within a batch only the last change per row counts (per-key order = offset order = seq order, and
  every event carries the whole row), so one statement touches each row once.
* Relationship types cannot be parameters: upserts are grouped by the mapped type, which is
  backtick-quoted; every value (including the exact ``relation_type`` text) is a parameter.

Relations are found through their from-endpoint (every ``from_entity_id`` the batch saw for that
relation id, before and after images), since Neo4j has no property index across relationship types.
Caxton never moves a relation to another from-entity (only strength/confidence change), so this finds
the stored one; see docs/sinks.md for the limit this implies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from replicator.events.avro import ENTITY_CHANGE, RELATION_CHANGE
from replicator.sinks.batch import Batch, Event
from replicator.sinks.errors import PoisonEvent
from replicator.sinks.neo4j.model import GraphModel, quote, relationship_type
from replicator.store.schema import ENTITY_COLUMNS, RELATION_COLUMNS

Row = dict[str, Any]

_ENTITY_FIELDS = ENTITY_COLUMNS[1:]  # the id is the node's key
_RELATION_FIELDS = tuple(c for c in RELATION_COLUMNS[1:] if c not in ("from_entity_id", "to_entity_id"))


@dataclass(frozen=True)
class Statement:
    """One Cypher statement run as ``UNWIND $rows AS row ...``."""

    query: str
    rows: list[Row]


@dataclass
class Plan:
    """What a batch does to the graph, in the order the applier runs it."""

    entity_upserts: list[Row] = field(default_factory=list)
    entity_deletes: list[Row] = field(default_factory=list)
    relation_deletes: list[Row] = field(default_factory=list)
    relation_upserts: dict[str, list[Row]] = field(default_factory=dict)  # by relationship type

    @property
    def size(self) -> int:
        return (
            len(self.entity_upserts)
            + len(self.entity_deletes)
            + len(self.relation_deletes)
            + sum(len(rows) for rows in self.relation_upserts.values())
        )

    def statements(self, model: GraphModel) -> list[Statement]:
        """Statements in dependency order: entities first (so relations find them), then entity
        deletes (their tombstones stop older relation creates), relation deletes, relation upserts."""
        out = []
        if self.entity_upserts:
            out.append(Statement(entity_upsert_query(model), self.entity_upserts))
        if self.entity_deletes:
            out.append(Statement(entity_delete_query(model), self.entity_deletes))
        if self.relation_deletes:
            out.append(Statement(relation_delete_query(model), self.relation_deletes))
        for rel_type in sorted(self.relation_upserts):
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


def plan(batch: Batch, model: GraphModel) -> Plan:
    """Turn a batch into a Plan. Pure. Raises PoisonEvent(index into batch.events) for a change that
    breaks the envelope's rules (a missing image, an id that differs from the key, an unknown op).
    Embedding changes are not this sink's and are ignored, like heartbeats and tombstones."""
    last: dict[tuple[str, int], tuple[int, Event]] = {}
    froms: dict[int, set[int]] = {}
    for index, event in enumerate(batch.events):
        if event.record is None or event.is_heartbeat or event.schema not in (ENTITY_CHANGE, RELATION_CHANGE):
            continue
        op = event.record.get("op")
        if op not in ("c", "u", "d", "r"):
            raise _poison(index, event, f"unknown op {op!r}")
        images = [_image(index, event, "before")] if op == "d" else [_image(index, event, "after")]
        if op == "u":
            images.append(_image(index, event, "before"))
        kind = "entity" if event.schema == ENTITY_CHANGE else "relation"
        row_id = int(images[0]["id"])
        if kind == "relation":
            froms.setdefault(row_id, set()).update(int(i["from_entity_id"]) for i in images)
        last[(kind, row_id)] = (index, event)

    result = Plan()
    for (kind, row_id), (_index, event) in last.items():
        assert event.record is not None
        seq = int(event.record["source"]["seq"])
        deleted = event.record["op"] == "d"
        if kind == "entity":
            if deleted:
                result.entity_deletes.append({"id": row_id, "seq": seq})
            else:
                result.entity_upserts.append({"id": row_id, "seq": seq, "props": _entity_props(event, model)})
            continue
        known_froms = sorted(froms[row_id])
        if deleted:
            result.relation_deletes.append({"id": row_id, "seq": seq, "froms": known_froms})
            continue
        after = event.record["after"]
        rel_type = relationship_type(after["relation_type"])
        result.relation_upserts.setdefault(rel_type, []).append(
            {
                "id": row_id,
                "seq": seq,
                "from": int(after["from_entity_id"]),
                "to": int(after["to_entity_id"]),
                "froms": known_froms,
                "props": _relation_props(after, model),
            }
        )
    return result


def _entity_props(event: Event, model: GraphModel) -> Row:
    assert event.record is not None
    after = event.record["after"]
    # Every value as the event carries it (docs/events.md, "Values"): Neo4j holds each storage class
    # natively (float inf, byte arrays, a list or a string of observations); None removes the property.
    props: Row = {model.renamed(f): after.get(f) for f in _ENTITY_FIELDS}
    props["extra"] = _extra(after)
    return props


def _relation_props(after: dict[str, Any], model: GraphModel) -> Row:
    props: Row = {model.renamed(f): after.get(f) for f in _RELATION_FIELDS}
    props["extra"] = _extra(after)
    return props


# --- Cypher. Labels and types are quoted identifiers from the model; values are always parameters.


def _audit(model: GraphModel, var: str, prior: str | None = None) -> str:
    if not model.audit:
        return ""
    base = prior if prior is not None else f"coalesce({var}._applied, [])"
    return f", {var}._applied = {base} + row.seq"


def entity_upsert_query(model: GraphModel) -> str:
    ent, tomb = quote(model.entity_label), quote(model.tombstone_label)
    return (
        "UNWIND $rows AS row "
        f"OPTIONAL MATCH (t:{tomb} {{kind: 'entity', id: row.id}}) "
        "WITH row, t WHERE t IS NULL OR t._seq < row.seq "
        f"MERGE (n:{ent} {{id: row.id}}) "
        "WITH n, row WHERE n._seq IS NULL OR n._seq < row.seq "
        f"SET n += row.props, n._seq = row.seq{_audit(model, 'n')} "
        "REMOVE n._placeholder"
    )


def _tombstone(model: GraphModel, kind: str) -> str:
    tomb = quote(model.tombstone_label)
    return (
        f"MERGE (t:{tomb} {{kind: '{kind}', id: row.id}}) "
        "ON CREATE SET t._seq = row.seq "
        "ON MATCH SET t._seq = CASE WHEN t._seq < row.seq THEN row.seq ELSE t._seq END "
    )


def entity_delete_query(model: GraphModel) -> str:
    ent = quote(model.entity_label)
    return (
        "UNWIND $rows AS row " + _tombstone(model, "entity") + f"WITH row OPTIONAL MATCH (n:{ent} {{id: row.id}}) "
        "WITH n, row WHERE n IS NOT NULL AND (n._seq IS NULL OR n._seq < row.seq) "
        "DETACH DELETE n"
    )


def relation_delete_query(model: GraphModel) -> str:
    ent = quote(model.entity_label)
    return (
        "UNWIND $rows AS row "
        + _tombstone(model, "relation")
        + f"WITH row OPTIONAL MATCH (a:{ent})-[r]->() WHERE a.id IN row.froms AND r.id = row.id "
        "WITH r, row WHERE r IS NOT NULL AND r._seq < row.seq "
        "DELETE r"
    )


def relation_upsert_query(model: GraphModel, rel_type: str) -> str:
    ent, tomb = quote(model.entity_label), quote(model.tombstone_label)
    return (
        "UNWIND $rows AS row "
        f"OPTIONAL MATCH (tr:{tomb} {{kind: 'relation', id: row.id}}) "
        f"OPTIONAL MATCH (tf:{tomb} {{kind: 'entity', id: row.from}}) "
        f"OPTIONAL MATCH (tt:{tomb} {{kind: 'entity', id: row.to}}) "
        "WITH row, tr, tf, tt "
        "WHERE (tr IS NULL OR tr._seq < row.seq) AND (tf IS NULL OR tf._seq < row.seq) "
        "AND (tt IS NULL OR tt._seq < row.seq) "
        f"OPTIONAL MATCH (a0:{ent})-[old]->() WHERE a0.id IN row.froms AND old.id = row.id "
        "WITH row, collect(old) AS olds "
        "WHERE all(o IN olds WHERE o._seq < row.seq) "
        "WITH row, olds, CASE WHEN size(olds) = 0 THEN [] ELSE coalesce(olds[0]._applied, []) END AS prior "
        "FOREACH (o IN olds | DELETE o) "
        f"MERGE (a:{ent} {{id: row.from}}) ON CREATE SET a._placeholder = true "
        f"MERGE (b:{ent} {{id: row.to}}) ON CREATE SET b._placeholder = true "
        f"CREATE (a)-[r:{quote(rel_type)}]->(b) "
        f"SET r = row.props, r.id = row.id, r._seq = row.seq{_audit(model, 'r', 'prior')}"
    )
