"""The pure half of the Qdrant sink: from a batch's events and the current state of the points they
touch, decide what to write. No I/O, no model: the applier runs the plan, the embedder fills in the
vectors of ``Plan.texts_to_embed``.

Rules (design §6; per entity id, events in seq order):

* An entity change applies only if its seq is newer than both the point's ``_seq`` and the id's
  tombstone; otherwise it changes nothing. So a replay of any prefix of the stream is a no-op and a
  delete's tombstone keeps older events from resurrecting the point.
* Only the newest applicable entity change of the batch matters (each carries the whole row).
* A delete removes the point and keeps a tombstone ``{id: seq}``.
* A store embedding (EmbeddingChange, same model name, 384 float32) is used instead of computing one
  when its text is the entity's text (the text after this batch, or the point's ``text_sha256`` if
  the batch has no entity change for it). When no entity is known yet (it arrived first), the store
  vector is written with its text hash, and the entity change that follows with the same text is a
  payload-only update. Likewise an embedding newer than every entity change known (its entity change
  is still in flight); the entity changes older than it that arrive meanwhile (several, when the
  embeddings partition ran ahead) are payload-only too. An embedding change applies once (seq newer
  than ``_embedding_seq``).
* An entity change that keeps the text (confidence, strength, metadata, version ...) is
  payload-only: no embedding, the vector and its labels stay.
* A snapshot entity (op ``r``) that would need a computed vector is written *pending* instead (with
  ``defer_snapshot``): its payload, the text's hash, the placeholder vector, no model call. The
  snapshot reads the embeddings table after the entities, so the store's vector of that text usually
  follows and replaces it; the destination computes the vectors of the points still pending once the
  watermark passes their seq (no embedding of that text came). Computing it first was wasted work
  for every entity that has an embedding.
* Embedding deletes are ignored: the point's vector stays valid for its text; the entity's delete
  removes the point.
* A Kafka tombstone of an entity (its ``d`` event removed by compaction) is that delete, at the seq
  its ``replicator.seq`` header carries: it applies unless the point is newer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from replicator.events.avro import EMBEDDING_CHANGE, ENTITY_CHANGE
from replicator.events.values import embedding_text
from replicator.sinks.batch import Event
from replicator.sinks.errors import PoisonEvent
from replicator.sinks.qdrant.points import (
    COMPUTED,
    EMBEDDING_MODEL,
    EMBEDDING_MODEL_VERSION,
    EMBEDDING_SEQ,
    EMBEDDING_SOURCE,
    ENTITY_FIELDS,
    PENDING,
    SEQ,
    STORE,
    TEXT_SHA256,
    VECTOR_BYTES,
    Payload,
    payload_value,
    seq_of,
    store_label,
    text_sha256,
)


@dataclass(frozen=True)
class PointWrite:
    """A whole point to upsert: its full payload and either the store's vector bytes or the text to
    embed (exactly one of them)."""

    id: int
    payload: Payload
    store_vector: bytes | None = None
    text: str | None = None
    #: The text the vector embeds (the store embedding's text, or ``text``): the mcp layout's ``document``.
    document: str | None = None
    #: Neither: a pending snapshot entity, written with the placeholder vector (module doc).
    pending: bool = False


@dataclass
class Plan:
    writes: list[PointWrite] = field(default_factory=list)
    #: id -> entity fields + ``_seq``, merged into the existing point (vector and its labels untouched)
    payload_updates: dict[int, Payload] = field(default_factory=dict)
    deletes: list[int] = field(default_factory=list)
    #: id -> seq of the delete, kept in ``<collection>_positions``
    tombstones: dict[int, int] = field(default_factory=dict)
    #: changes that changed nothing: not newer than the destination, an embedding of another model or
    #: of a text the entity no longer has, an embedding delete, an embedding of a deleted entity
    skipped: int = 0

    @property
    def texts_to_embed(self) -> list[str]:
        """Distinct texts needing a computed vector, in first-seen order."""
        return list(dict.fromkeys(w.text for w in self.writes if w.text is not None))

    @property
    def pending(self) -> int:
        """Snapshot entities written pending (placeholder vector, no model call)."""
        return sum(1 for w in self.writes if w.pending)

    def chunks(self, size: int) -> list[Plan]:
        """This plan as plans of at most ``size`` point writes each (the payload updates, deletes and
        tombstones in the last), so that a batch's vectors are built ``size`` at a time. Every id has
        one outcome in a plan, so the order they are written in does not matter."""
        parts = [Plan(writes=self.writes[i : i + size]) for i in range(0, len(self.writes), size)] or [Plan()]
        last = parts[-1]
        last.payload_updates, last.deletes, last.tombstones = self.payload_updates, self.deletes, self.tombstones
        last.skipped = self.skipped
        return parts

    @property
    def reused(self) -> int:
        """Store vectors written instead of computing one."""
        return sum(1 for w in self.writes if w.store_vector is not None)

    @property
    def empty(self) -> bool:
        return not (self.writes or self.payload_updates or self.deletes or self.tombstones)


@dataclass(frozen=True)
class _Change:
    index: int  # in Batch.events
    seq: int
    op: str
    image: dict[str, Any] | None  # after for c/u/r, before for d


def _entity_id(event: Event, image: Mapping[str, Any] | None, id_field: str, index: int) -> int:
    if image is not None and image.get(id_field) is not None:
        return int(image[id_field])
    if event.key is not None and event.key >= 0:
        return event.key
    raise PoisonEvent(index, f"{event.schema} at {event.where}@{event.offset} names no entity id")


_TOMBSTONE_SCHEMA: Final = {"entities": ENTITY_CHANGE, "embeddings": EMBEDDING_CHANGE}


def _group(events: Sequence[Event]) -> tuple[dict[int, list[_Change]], dict[int, list[_Change]], int]:
    """Entity and embedding changes per entity id (batch order), and how many events were ignored.
    A tombstone (what compaction leaves of a deleted key) is a delete at its header's seq."""
    entities: dict[int, list[_Change]] = {}
    embeddings: dict[int, list[_Change]] = {}
    ignored = 0
    for index, event in enumerate(events):
        record = event.record
        if event.is_tombstone:
            schema = _TOMBSTONE_SCHEMA.get(event.headers.table or "")
            if schema is None or event.headers.seq is None or event.key is None:
                ignored += schema is not None  # no seq: not written by the replicator source
                continue
            target = entities if schema == ENTITY_CHANGE else embeddings
            target.setdefault(event.key, []).append(_Change(index, event.headers.seq, "d", None))
            continue
        if record is None or event.is_heartbeat:
            continue
        if event.schema not in (ENTITY_CHANGE, EMBEDDING_CHANGE):
            ignored += 1  # relations are the graph sink's concern
            continue
        op = str(record["op"])
        image = record.get("before") if op == "d" else record.get("after")
        if image is None and op != "d":
            raise PoisonEvent(index, f"{event.schema} op={op} at {event.where}@{event.offset} has no 'after' image")
        if event.schema == ENTITY_CHANGE:
            entity_id = _entity_id(event, image, "id", index)
            entities.setdefault(entity_id, []).append(_Change(index, int(record["source"]["seq"]), op, image))
        else:
            entity_id = _entity_id(event, image, "entity_id", index)
            embeddings.setdefault(entity_id, []).append(_Change(index, int(record["source"]["seq"]), op, image))
    return entities, embeddings, ignored


def _entity_payload(image: Mapping[str, Any], seq: int) -> Payload:
    payload: Payload = {name: payload_value(image.get(name)) for name in ENTITY_FIELDS}
    payload[SEQ] = seq
    return payload


def _text_of(image: Mapping[str, Any]) -> str:
    return embedding_text(image["name"], image["entity_type"], image.get("observations"))


def _usable_store_vector(change: _Change, model: str) -> bool:
    image = change.image
    return (
        change.op != "d"
        and image is not None
        and image.get("model_version") == model
        and image.get("text") is not None
        and isinstance(image.get("vector"), bytes)
        and len(image["vector"]) == VECTOR_BYTES
    )


def plan(
    events: Sequence[Event],
    points: Mapping[int, Payload],
    tombstones: Mapping[int, int],
    model: str,
    model_version: str,
    *,
    defer_snapshot: bool = False,
) -> Plan:
    """What to write for ``events`` (a batch's events, any order across ids, seq order per id) given
    the payloads of the existing ``points`` and the ``tombstones`` (id -> delete seq) of the ids they
    touch. ``model``/``model_version`` label computed vectors; only store embeddings of ``model`` are
    reused. ``defer_snapshot``: a snapshot entity needing a computed vector is written pending (module
    doc). Pure and deterministic. Raises PoisonEvent for an event with no usable image or id."""
    entities, embeddings, ignored = _group(events)
    result = Plan(skipped=ignored)
    labels = (model, model_version, defer_snapshot)
    for entity_id in sorted(set(entities) | set(embeddings)):
        _plan_one(result, entity_id, entities.get(entity_id, []), embeddings.get(entity_id, []),
                  points.get(entity_id), tombstones.get(entity_id, 0), labels)  # fmt: skip
    return result


def _target_text(final: _Change | None, point: Payload | None) -> tuple[str | None, str | None]:
    """The text the vector must embed after this batch and its SHA-256; None while no entity is known
    (the point's recorded hash then, if it has an entity)."""
    if final is not None:
        assert final.image is not None  # _group refuses c/u/r without an after image
        final_text = _text_of(final.image)
        return final_text, text_sha256(final_text)
    known = point is not None and seq_of(point) > 0
    return None, str(point[TEXT_SHA256]) if known and point is not None and point.get(TEXT_SHA256) else None


def _chosen_embedding(  # noqa: PLR0917 - private, called once
    embedding_changes: list[_Change],
    point: Payload | None,
    tombstone: int,
    final: _Change | None,
    target_sha: str | None,
    model: str,
) -> _Change | None:
    """The newest store embedding the point may take: newer than what it holds, a usable vector, and of
    the target text. An embedding's text is the entity's text at the embedding's seq. Newer than every
    entity change known here, it is the text of an entity change still in flight on the other topic:
    take it (that change will then be payload-only). Dropping it left a computed vector where the
    store has one."""
    embedding_floor = max(seq_of(point, EMBEDDING_SEQ), tombstone)
    entity_seq = final.seq if final is not None else seq_of(point)
    candidates = [
        c
        for c in embedding_changes
        if c.seq > embedding_floor
        and _usable_store_vector(c, model)
        and (
            target_sha is None or c.seq > entity_seq or text_sha256(str(c.image["text"])) == target_sha  # type: ignore[index]
        )
    ]
    return max(candidates, key=lambda c: c.seq) if candidates else None


def _plan_one(  # noqa: PLR0917 - private, called once
    result: Plan,
    entity_id: int,
    entity_changes: list[_Change],
    embedding_changes: list[_Change],
    point: Payload | None,
    tombstone: int,
    labels: tuple[str, str, bool],
) -> None:
    model = labels[0]
    floor = max(seq_of(point), tombstone)
    newer = [c for c in entity_changes if c.seq > floor]
    result.skipped += len(entity_changes) - len(newer)
    final = max(newer, key=lambda c: c.seq) if newer else None

    if final is not None and final.op == "d":
        result.deletes.append(entity_id)
        result.tombstones[entity_id] = final.seq
        result.skipped += len(embedding_changes)
        return

    text, target_sha = _target_text(final, point)
    chosen = _chosen_embedding(embedding_changes, point, tombstone, final, target_sha, model)
    result.skipped += len(embedding_changes) - (1 if chosen else 0)

    base: Payload = dict(point) if point is not None else {"id": entity_id, SEQ: 0, EMBEDDING_SEQ: 0}
    if final is not None:
        assert final.image is not None
        base.update(_entity_payload(final.image, final.seq))

    if chosen is not None:
        image = chosen.image
        assert image is not None
        base.update({
            TEXT_SHA256: text_sha256(str(image["text"])),
            EMBEDDING_MODEL: image["model_version"],
            EMBEDDING_MODEL_VERSION: store_label(image["model_version"]),
            EMBEDDING_SOURCE: STORE,
            EMBEDDING_SEQ: chosen.seq,
        })  # fmt: skip
        result.writes.append(
            PointWrite(entity_id, base, store_vector=bytes(image["vector"]), document=str(image["text"]))
        )
    elif final is None:
        return
    elif point is not None and (point.get(TEXT_SHA256) == target_sha or seq_of(point, EMBEDDING_SEQ) > final.seq):
        # Same text, or the point's vector is a store embedding of a LATER text of this entity (the
        # embeddings partition ran ahead): this older change must not replace it, and the change
        # carrying that text follows on this partition.
        assert final.image is not None
        result.payload_updates[entity_id] = _entity_payload(final.image, final.seq)
    else:
        result.writes.append(_to_compute(entity_id, base, text, target_sha, labels, snapshot=final.op == "r"))


def _to_compute(
    entity_id: int,
    base: Payload,
    text: str | None,
    target_sha: str | None,
    labels: tuple[str, str, bool],
    *,
    snapshot: bool,
) -> PointWrite:
    """The point with a vector to compute from ``text``; pending for a snapshot entity (module doc)."""
    model, model_version, defer_snapshot = labels
    pending = defer_snapshot and snapshot
    base.update({
        TEXT_SHA256: target_sha,
        EMBEDDING_MODEL: model,
        EMBEDDING_MODEL_VERSION: model_version,
        EMBEDDING_SOURCE: PENDING if pending else COMPUTED,
    })  # fmt: skip
    base.setdefault(EMBEDDING_SEQ, 0)
    if pending:
        return PointWrite(entity_id, base, document=text, pending=True)
    return PointWrite(entity_id, base, text=text, document=text)


def touched_ids(events: Sequence[Event]) -> set[int]:
    """Entity ids whose point state ``plan`` needs. Raises PoisonEvent like ``plan``."""
    entities, embeddings, _ = _group(events)
    return set(entities) | set(embeddings)
