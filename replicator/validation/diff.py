"""Compare the store with a destination, key by key and field by field. Pure.

A :class:`Mismatch` names the target, the kind of record (entity, relation, embedding), its key (the
store id) and the problem: ``missing`` (in the store, not in the destination), ``extra`` (in the
destination, not in the store) or ``different`` (both, with the differing fields named).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from replicator.embedding import MODEL_NAME
from replicator.events.values import embedding_text
from replicator.sinks.neo4j.model import relationship_type
from replicator.validation.model import (
    ENTITY_FIELDS,
    RELATION_FIELDS,
    Entity,
    Relation,
    Snapshot,
    differing_fields,
    vectors_equal,
)

Kind = Literal["entity", "relation", "embedding"]
Problem = Literal["missing", "extra", "different"]


@dataclass(frozen=True)
class Mismatch:
    """One key that differs. ``destination`` holds the destination's copy of an extra record (what a
    delete must be re-emitted with); it is not part of the JSON report."""

    target: str
    kind: Kind
    key: int
    problem: Problem
    fields: tuple[str, ...] = ()
    detail: str = ""
    destination: Entity | Relation | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target, "kind": self.kind, "key": self.key, "problem": self.problem}
        if self.fields:
            out["fields"] = list(self.fields)
        if self.detail:
            out["detail"] = self.detail
        return out

    def __str__(self) -> str:
        text = f"{self.target} {self.kind} {self.key}: {self.problem}"
        if self.fields:
            text += f" ({', '.join(self.fields)})"
        return text + (f" - {self.detail}" if self.detail else "")


def _sha256(text: str) -> str:
    import hashlib  # noqa: PLC0415 - only this helper needs it

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compare_entities(target: str, store: Snapshot, dest: Snapshot, keys: Iterable[int] | None = None) -> list[Mismatch]:
    """Entities of ``keys`` (default: the union of both snapshots' ids). An id that is only a
    placeholder in the destination is ``missing`` (the entity never arrived)."""
    ids = sorted(set(store.entities) | set(dest.entities) if keys is None else set(keys))
    out: list[Mismatch] = []
    for key in ids:
        mine, theirs = store.entities.get(key), dest.entities.get(key)
        if mine is not None and theirs is None:
            detail = "only a placeholder node" if key in dest.placeholders else ""
            out.append(Mismatch(target, "entity", key, "missing", detail=detail))
        elif mine is None and theirs is not None:
            out.append(Mismatch(target, "entity", key, "extra", destination=theirs))
        elif mine is not None and theirs is not None:
            diff = differing_fields(mine, theirs, ENTITY_FIELDS)
            if diff:
                out.append(Mismatch(target, "entity", key, "different", diff, destination=theirs))
    return out


def compare_relations(
    target: str, store: Snapshot, dest: Snapshot, keys: Iterable[int] | None = None
) -> list[Mismatch]:
    """Relations of ``keys`` (default: the union of ids); the Neo4j relationship type must be the
    one design §6 derives from ``relation_type`` (field ``type``)."""
    ids = sorted(set(store.relations) | set(dest.relations) if keys is None else set(keys))
    out: list[Mismatch] = []
    for key in ids:
        mine, theirs = store.relations.get(key), dest.relations.get(key)
        if mine is not None and theirs is None:
            out.append(Mismatch(target, "relation", key, "missing"))
        elif mine is None and theirs is not None:
            out.append(Mismatch(target, "relation", key, "extra", destination=theirs))
        elif mine is not None and theirs is not None:
            diff = differing_fields(mine, theirs, RELATION_FIELDS)
            if theirs.graph_type is not None and theirs.graph_type != relationship_type(mine.relation_type):
                diff = (*diff, "type")
            if diff:
                out.append(Mismatch(target, "relation", key, "different", diff, destination=theirs))
    return out


def compare_embeddings(
    target: str, store: Snapshot, dest: Snapshot, keys: Iterable[int] | None = None
) -> list[Mismatch]:
    """Vectors of the entities ``keys`` (default: the store's entities) that exist on both sides.

    Where the store keeps an embedding, the point's vector must be it (field ``vector``). Where it
    does not, the sink computed one: it must embed the entity's current text (field ``text_sha256``,
    checked when the payload carries it). Either way it is a vector of the sink's model (field
    ``embedding_model``, checked when the payload names one). A point without a vector is ``missing``.
    """
    ids = sorted(set(store.entities) if keys is None else set(keys))
    out: list[Mismatch] = []
    for key in ids:
        entity = store.entities.get(key)
        if entity is None or key not in dest.entities:
            continue  # missing/extra entities are reported by compare_entities
        mine, theirs = store.embeddings.get(key), dest.embeddings.get(key)
        if theirs is None:
            out.append(Mismatch(target, "embedding", key, "missing", detail="the point has no vector"))
            continue
        if theirs.model_version is not None and theirs.model_version != MODEL_NAME:
            detail = f"embedded with {theirs.model_version}, not {MODEL_NAME}"
            out.append(Mismatch(target, "embedding", key, "different", ("embedding_model",), detail))
            continue
        if mine is not None:
            if not vectors_equal(mine.vector, theirs.vector):
                out.append(Mismatch(target, "embedding", key, "different", ("vector",), "not the store's vector"))
        elif theirs.text_sha256 is not None:
            text = embedding_text(entity.name, entity.entity_type, entity.observations)
            if theirs.text_sha256 != _sha256(text):
                out.append(
                    Mismatch(target, "embedding", key, "different", ("text_sha256",), "the vector embeds stale text")
                )
    return out


def compare(target: str, store: Snapshot, dest: Snapshot, *, relations: bool, embeddings: bool) -> list[Mismatch]:
    """Every difference between two full snapshots (entities, then relations, then embeddings)."""
    out = compare_entities(target, store, dest)
    if relations:
        out += compare_relations(target, store, dest)
    if embeddings:
        out += compare_embeddings(target, store, dest)
    return out


def compare_keys(target: str, kind: Kind, store: Iterable[int], dest: Iterable[int]) -> list[Mismatch]:
    """Missing and extra ids of one kind, from id sets alone (no fields read)."""
    mine, theirs = set(store), set(dest)
    return [Mismatch(target, kind, k, "missing") for k in sorted(mine - theirs)] + [
        Mismatch(target, kind, k, "extra") for k in sorted(theirs - mine)
    ]


def merge(mismatches: Iterable[Mismatch]) -> list[Mismatch]:
    """One mismatch per (target, kind, key, problem), keeping the most informative (fields, a
    destination copy), ordered by target, kind, key."""
    best: dict[tuple[str, str, int, str], Mismatch] = {}
    for m in mismatches:
        k = (m.target, m.kind, m.key, m.problem)
        old = best.get(k)
        if old is None or (len(m.fields), m.destination is not None) > (len(old.fields), old.destination is not None):
            best[k] = m
    return [best[k] for k in sorted(best)]
