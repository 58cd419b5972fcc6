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
* The tombstone reads are skipped for an upsert no tombstone can stop: its seq is above the highest
  tombstone ``_seq`` the applier read under the position lock (``newest_tombstone``) and above every
  delete of this batch of an endpoint (those run first and leave tombstones). Another sink name
  writing the namespace may commit a tombstone after that read; the row is then written once more
  and removed again when this sink applies the same delete (docs/sinks.md).
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
import math
from dataclasses import dataclass, field
from typing import Any, Final

from replicator.events.avro import ENTITY_CHANGE, RELATION_CHANGE
from replicator.position import SinkPosition
from replicator.sinks.batch import Batch, Event
from replicator.sinks.errors import PoisonEvent
from replicator.sinks.neo4j.cypher import (
    entity_delete_query,
    entity_upsert_query,
    relation_delete_query,
    relation_delete_unlocated_query,
    relation_upsert_query,
)
from replicator.sinks.neo4j.layout import node_props
from replicator.sinks.neo4j.model import GraphModel, relationship_type
from replicator.store.schema import ENTITY_COLUMNS, RELATION_COLUMNS

Row = dict[str, Any]

_ENTITY_FIELDS = ENTITY_COLUMNS[1:]  # the id is the node's key
_RELATION_FIELDS = tuple(c for c in RELATION_COLUMNS[1:] if c not in ("from_entity_id", "to_entity_id"))
_KIND_OF_TABLE: Final = {"entities": "entity", "relations": "relation"}
_KIND_OF_SCHEMA: Final = {ENTITY_CHANGE: "entity", RELATION_CHANGE: "relation"}


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
        5.26+), else one per type (each row is one relation: their order does not matter). Upserts
        whose rows no tombstone can stop (``row["guard"]`` false) run without the tombstone reads."""
        out = [Statement(entity_upsert_query(model, guarded), rows) for guarded, rows in _by_guard(self.entity_upserts)]
        if self.relation_deletes:
            out.append(Statement(relation_delete_query(model), self.relation_deletes))
        if self.relation_deletes_unlocated:
            out.append(Statement(relation_delete_unlocated_query(model), self.relation_deletes_unlocated))
        if self.entity_deletes:
            out.append(Statement(entity_delete_query(model), self.entity_deletes))
        types = sorted(self.relation_upserts)
        if dynamic_types and types:
            rows = [row for rel_type in types for row in self.relation_upserts[rel_type]]
            return out + [Statement(relation_upsert_query(model, None, g), part) for g, part in _by_guard(rows)]
        for rel_type in types:
            for guarded, part in _by_guard(self.relation_upserts[rel_type]):
                out.append(Statement(relation_upsert_query(model, rel_type, guarded), part))
        return out


def _by_guard(rows: list[Row]) -> list[tuple[bool, list[Row]]]:
    """``rows`` split into those that need the tombstone reads (first) and those that do not; empty
    parts left out."""
    parts = [(True, [r for r in rows if r["guard"]]), (False, [r for r in rows if not r["guard"]])]
    return [(guarded, part) for guarded, part in parts if part]


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


def plan(
    batch: Batch, model: GraphModel, stored: SinkPosition | None = None, newest_tombstone: float = math.inf
) -> Plan:
    """Turn a batch into a Plan, leaving out the events ``stored`` (the destination's position)
    already covers. ``newest_tombstone`` is the highest ``_seq`` of the namespace's tombstones when
    the batch is applied (0: none; unknown: every upsert reads its tombstones): an upsert with a higher
    seq than that and than every delete of the batch its row depends on cannot be stopped by a
    tombstone, and is planned without reading them (``guard`` false). Pure. Raises
    PoisonEvent(index into batch.events) for a change that breaks the envelope's rules (a missing
    image, an id that differs from the key, an unknown op), and StoreMismatch when the batch holds
    events of two stores. Embedding changes are not this sink's and are ignored, like heartbeats;
    tombstones are deletes (``unusable_tombstones`` counts those without a seq header)."""
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
                props = _entity_props(event, model)
                result.entity_upserts.append(
                    {"id": row_id, "seq": seq, "guard": seq <= newest_tombstone, "props": props}
                )
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
                "guard": seq <= newest_tombstone,
                "props": _relation_props(after, model),
            }
        )
    _guard_endpoints_deleted(result)
    return result


def _guard_endpoints_deleted(result: Plan) -> None:
    """Relation upserts whose endpoint the batch itself deletes at a higher seq read their tombstones:
    the entity deletes run before the relation upserts and leave the tombstone that stops them."""
    deleted = {row["id"]: row["seq"] for row in result.entity_deletes}
    if not deleted:
        return
    for rows in result.relation_upserts.values():
        for row in rows:
            if deleted.get(row["from"], 0) >= row["seq"] or deleted.get(row["to"], 0) >= row["seq"]:
                row["guard"] = True


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
