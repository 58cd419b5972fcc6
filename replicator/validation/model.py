"""The store's content as typed values, the same whichever backend it was read from. Pure.

Every reader (store, Neo4j, Qdrant) returns a :class:`Snapshot` of these, so validation and diff
compare field by field without knowing where a value came from. Field values are the store's values
exactly as SQLite holds them (docs/events.md, "Values"): None, int, float, str or bytes whatever the
column's declared type; ``observations`` is the decoded list for a JSON array of strings, otherwise
the exact TEXT or BLOB; ``metadata`` the writer's JSON *text* (design §1, §6); times are epoch ms.
Equality is exact and keeps the storage class: a value that round-trips compares equal, a value that
lost its class or its last bit does not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

import numpy as np

from replicator.events.values import observations_value
from replicator.store.schema import ENTITY_COLUMNS, RELATION_COLUMNS

# The sink's mapping is the definition (design §6); validation compares against it, never a copy.

#: Field names compared for entities and relations, in report order (the keys are ``id``).
ENTITY_FIELDS: Final = ENTITY_COLUMNS[1:]
RELATION_FIELDS: Final = RELATION_COLUMNS[1:]

#: Two unit vectors are "the same embedding" when no component differs by more than this (the store
#: keeps float32; Qdrant re-normalises cosine vectors on upsert, which moves the last bits).
VECTOR_ABS_TOL: Final = 1e-5


ObservationsValue = tuple[str, ...] | str | bytes


def decode_observations(stored: object) -> ObservationsValue:
    """The store's observations column as the events carry it (``events.values.observations_value``):
    a tuple for a JSON array of strings, else the TEXT or BLOB exactly as stored. Never raises."""
    if isinstance(stored, str | bytes):
        value = observations_value(stored)
        return tuple(value) if isinstance(value, list) else value
    return () if stored is None else (json.dumps(stored),)


def observations_of(value: object) -> ObservationsValue:
    """A destination's observations (a list, a string, bytes) in the same shape. Never raises."""
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return () if value is None else value if isinstance(value, str) else (json.dumps(value),)


@dataclass(frozen=True)
class Entity:
    """One row of ``entities``."""

    id: int
    name: Any
    entity_type: Any
    observations: ObservationsValue
    confidence: Any = 1.0
    strength: Any = 1.0
    version: Any = 1
    created_at: Any = None
    updated_at: Any = None
    valid_from: Any = None
    valid_to: Any = None
    metadata: Any = None

    def to_row_image(self) -> dict[str, Any]:
        """The row as the changelog images it (observations as JSON text), for resync of a delete."""
        image = {f.name: _image_value(getattr(self, f.name)) for f in fields(self)}
        obs = self.observations
        image["observations"] = json.dumps(list(obs)) if isinstance(obs, tuple) else _image_value(obs)
        return image


@dataclass(frozen=True)
class Relation:
    """One row of ``relations``, with the endpoint names resolved (None when the endpoint is absent
    or only a placeholder in the destination)."""

    id: int
    from_entity_id: int
    to_entity_id: int
    relation_type: Any
    strength: Any = 1.0
    confidence: Any = 1.0
    created_at: Any = None
    updated_at: Any = None
    valid_from: Any = None
    valid_to: Any = None
    metadata: Any = None
    from_name: Any = None
    to_name: Any = None
    graph_type: str | None = None  # the Neo4j relationship type it is stored under (None elsewhere)

    def to_row_image(self) -> dict[str, Any]:
        """The row as the changelog images it (plus endpoint names), for resync of a delete."""
        image = {name: _image_value(getattr(self, name)) for name in ("id", *RELATION_FIELDS)}
        image["from_entity_name"] = _image_value(self.from_name)
        image["to_entity_name"] = _image_value(self.to_name)
        return image


def _image_value(value: object) -> object:
    """A value as the trigger renders it in an image (capture/image.py reads it back exactly)."""
    if isinstance(value, bytes | bytearray):
        return ["blob", bytes(value).hex().upper()]
    if isinstance(value, float) and math.isfinite(value) and abs(value) >= 1e100:
        mantissa = math.ldexp(value, -768)
        return ["real", repr(mantissa), 768]
    return value


@dataclass(frozen=True)
class Embedding:
    """One row of ``embeddings`` (or a Qdrant point's vector): 384 floats, unit length."""

    entity_id: int
    vector: tuple[float, ...]
    model_version: str | None = None
    created_at: int | None = None
    text_sha256: str | None = None  # Qdrant payload: the text the vector embeds (None from the store)


@dataclass(frozen=True)
class Keys:
    """The ids a backend holds (cheap to read: ids only)."""

    entities: frozenset[int]
    relations: frozenset[int]
    placeholders: frozenset[int] = frozenset()


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


def values_equal(a: object, b: object) -> bool:  # noqa: PLR0911 - one return per storage class
    """Field equality as validation means it: exact, and keeping the storage class. An int equals only
    an int, a float only the same float (NaN equals NaN, 0.0 is not -0.0), bytes only the same bytes,
    text only the same text; sequences element-wise (a list equals a tuple)."""
    cls = type(a)
    if cls is type(b):  # the common cases, answered before the class is worked out (millions per pre-check)
        if cls in _EXACT:
            return bool(a == b)
        if cls is float:
            return _reals_equal(a, b)  # type: ignore[arg-type]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    kind = _kind(a)
    if kind != _kind(b):
        return False  # e.g. an int against a float: the storage class was lost
    if kind == "real":
        return _reals_equal(float(a), float(b))  # type: ignore[arg-type]
    if kind == "blob":
        return bool(bytes(a) == bytes(b))  # type: ignore[call-overload]
    return bool(a == b)


_EXACT: Final = frozenset({str, int, bool, type(None)})  # classes whose equality is plain ``==``
_KINDS: Final = {int: "integer", float: "real", str: "text", type(None): "null"}


def _reals_equal(x: float, y: float) -> bool:
    """NaN equals NaN; 0.0 is not -0.0."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, bytes | bytearray):
        return "blob"
    return next((name for t, name in _KINDS.items() if isinstance(value, t)), type(value).__name__)


def differing_fields(expected: object, actual: object, names: Iterable[str]) -> tuple[str, ...]:
    """The names of ``names`` whose values differ between two records, in the given order."""
    return tuple(n for n in names if not values_equal(getattr(expected, n), getattr(actual, n)))


def vectors_equal(a: tuple[float, ...], b: tuple[float, ...], tol: float = VECTOR_ABS_TOL) -> bool:
    """Same embedding: same length and every component within ``tol`` after L2-normalising both."""
    if len(a) != len(b):
        return False
    # numpy: a full comparison checks every vector (384 components), which in Python loops took 30%
    # of its time. A NaN component compares unequal either way.
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na = float(np.sqrt(x @ x)) or 1.0
    nb = float(np.sqrt(y @ y)) or 1.0
    return bool(np.all(np.abs(x / na - y / nb) <= tol))


def entity_from_mapping(props: Mapping[str, Any]) -> Entity:
    """An Entity from a destination's property map (Neo4j node, Qdrant payload with its tags read back),
    every value as it is there: nothing coerced, so a value that lost its class shows. Raises KeyError
    when ``id``/``name``/``entity_type`` are missing."""
    metadata = props.get("metadata")
    name, entity_type = props["name"], props["entity_type"]
    return Entity(
        id=int(props["id"]),
        name=bytes(name) if isinstance(name, bytearray) else name,
        entity_type=bytes(entity_type) if isinstance(entity_type, bytearray) else entity_type,
        observations=observations_of(props.get("observations")),
        confidence=props.get("confidence"),
        strength=props.get("strength"),
        version=props.get("version"),
        created_at=props.get("created_at"),
        updated_at=props.get("updated_at"),
        valid_from=props.get("valid_from"),
        valid_to=props.get("valid_to"),
        # A destination that decoded the JSON keeps an object: compare it as the writer's text would be.
        metadata=json.dumps(metadata) if isinstance(metadata, dict | list) else metadata,
    )
