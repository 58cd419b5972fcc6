"""The store's content as typed values, the same whichever backend it was read from. Pure.

Every reader (store, Neo4j, Qdrant) returns a :class:`Snapshot` of these, so validation and diff
compare field by field without knowing where a value came from. Field values follow the store's
meaning: ``observations`` is the decoded list, ``metadata`` the writer's JSON *text* exactly as stored
(design §1, §6), times are epoch ms.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

from replicator.store.schema import ENTITY_COLUMNS, RELATION_COLUMNS

# The sink's mapping is the definition (design §6); validation compares against it, never a copy.

#: Field names compared for entities and relations, in report order (the keys are ``id``).
ENTITY_FIELDS: Final = ENTITY_COLUMNS[1:]
RELATION_FIELDS: Final = RELATION_COLUMNS[1:]

#: Floats that differ by less than this are equal (REAL survives SQLite, Bolt and JSON exactly, but a
#: destination may have round-tripped through float32 or decimal text).
FLOAT_REL_TOL: Final = 1e-9
#: Two unit vectors are "the same embedding" when no component differs by more than this (the store
#: keeps float32; Qdrant re-normalises cosine vectors on upsert, which moves the last bits).
VECTOR_ABS_TOL: Final = 1e-5


def decode_observations(text: str) -> tuple[str, ...]:
    """The entity row's observations JSON array as a tuple. A value that is not a JSON array of
    strings (the writer stored something odd) is kept as one observation holding the raw text, so a
    reader never fails on it and the comparison still sees it."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return (text,)
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return (text,)


@dataclass(frozen=True)
class Entity:
    """One row of ``entities``."""

    id: int
    name: str
    entity_type: str
    observations: tuple[str, ...]
    confidence: float | None = 1.0
    strength: float | None = 1.0
    version: int | None = 1
    created_at: int | None = None
    updated_at: int | None = None
    valid_from: int | None = None
    valid_to: int | None = None
    metadata: str | None = None

    def to_row_image(self) -> dict[str, Any]:
        """The row as the changelog images it (observations as JSON text), for resync of a delete."""
        image = {f.name: getattr(self, f.name) for f in fields(self)}
        image["observations"] = json.dumps(list(self.observations))
        return image


@dataclass(frozen=True)
class Relation:
    """One row of ``relations``, with the endpoint names resolved (None when the endpoint is absent
    or only a placeholder in the destination)."""

    id: int
    from_entity_id: int
    to_entity_id: int
    relation_type: str
    strength: float | None = 1.0
    confidence: float | None = 1.0
    created_at: int | None = None
    updated_at: int | None = None
    valid_from: int | None = None
    valid_to: int | None = None
    metadata: str | None = None
    from_name: str | None = None
    to_name: str | None = None
    graph_type: str | None = None  # the Neo4j relationship type it is stored under (None elsewhere)

    def to_row_image(self) -> dict[str, Any]:
        """The row as the changelog images it (plus endpoint names), for resync of a delete."""
        image = {name: getattr(self, name) for name in ("id", *RELATION_FIELDS)}
        image["from_entity_name"] = self.from_name
        image["to_entity_name"] = self.to_name
        return image


@dataclass(frozen=True)
class Embedding:
    """One row of ``embeddings`` (or a Qdrant point's vector): 384 floats, unit length."""

    entity_id: int
    vector: tuple[float, ...]
    model_version: str | None = None
    created_at: int | None = None
    text_sha256: str | None = None  # Qdrant payload: the text the vector embeds (None from the store)


@dataclass
class Snapshot:
    """What one backend holds (all of it, or the part that was asked for), keyed by id.

    ``placeholders`` are ids of Neo4j nodes created for a relation endpoint that never arrived;
    they are not entities.
    """

    backend: str
    entities: dict[int, Entity] = field(default_factory=dict)
    relations: dict[int, Relation] = field(default_factory=dict)
    embeddings: dict[int, Embedding] = field(default_factory=dict)
    placeholders: set[int] = field(default_factory=set)


def values_equal(a: object, b: object) -> bool:
    """Field equality as validation means it: ints and floats compare numerically with a relative
    tolerance, sequences element-wise (a list equals a tuple), everything else with ``==``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(float(a), float(b), rel_tol=FLOAT_REL_TOL, abs_tol=1e-12)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def differing_fields(expected: object, actual: object, names: Iterable[str]) -> tuple[str, ...]:
    """The names of ``names`` whose values differ between two records, in the given order."""
    return tuple(n for n in names if not values_equal(getattr(expected, n), getattr(actual, n)))


def vectors_equal(a: tuple[float, ...], b: tuple[float, ...], tol: float = VECTOR_ABS_TOL) -> bool:
    """Same embedding: same length and every component within ``tol`` after L2-normalising both."""
    if len(a) != len(b):
        return False
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(x * x for x in b)) or 1.0
    return all(abs(x / na - y / nb) <= tol for x, y in zip(a, b, strict=True))


def entity_from_mapping(props: Mapping[str, Any]) -> Entity:
    """An Entity from a destination's property map (Neo4j node, Qdrant payload); raises KeyError or
    ValueError when ``id``/``name``/``entity_type`` are missing."""
    observations = props.get("observations")
    metadata = props.get("metadata")
    return Entity(
        id=int(props["id"]),
        name=str(props["name"]),
        entity_type=str(props["entity_type"]),
        observations=tuple(str(o) for o in observations) if isinstance(observations, list | tuple) else (),
        confidence=_opt_float(props.get("confidence")),
        strength=_opt_float(props.get("strength")),
        version=_opt_int(props.get("version")),
        created_at=_opt_int(props.get("created_at")),
        updated_at=_opt_int(props.get("updated_at")),
        valid_from=_opt_int(props.get("valid_from")),
        valid_to=_opt_int(props.get("valid_to")),
        # A destination that decoded the JSON keeps an object: compare it as the writer's text would be.
        metadata=None if metadata is None else metadata if isinstance(metadata, str) else json.dumps(metadata),
    )


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def add_point(snap: Snapshot, pid: int, payload: dict[str, Any], vector: Any) -> None:  # noqa: ANN401
    """One Qdrant point (design §6) into ``snap``: its entity (or a placeholder when the payload has
    no entity fields yet: a vector awaiting its entity) and its vector (the only one of a named-vector
    mapping)."""
    payload.setdefault("id", pid)
    try:
        snap.entities[pid] = entity_from_mapping(payload)
    except (KeyError, ValueError, TypeError):
        snap.placeholders.add(pid)
    if isinstance(vector, dict):
        vector = next(iter(vector.values()), None)
    if isinstance(vector, list | tuple):
        snap.embeddings[pid] = Embedding(
            pid,
            tuple(float(x) for x in vector),
            model_version=payload.get("embedding_model"),
            text_sha256=payload.get("text_sha256"),
        )
