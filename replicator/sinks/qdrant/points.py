"""What a Qdrant point of the sink holds (design §6), and the ids of its bookkeeping points. Pure.

A point of ``<collection>`` is one entity: id = the entity id, vector = the 384-d embedding of its
text, payload = the entity's fields plus

* ``_seq``: seq of the last entity change applied (0 while the point only holds a store vector that
  arrived before its entity: "awaiting its entity");
* ``text_sha256``: SHA-256 of the text the *vector* embeds (equal to the entity's text whenever the
  entity is present);
* ``embedding_model`` / ``embedding_model_version``: the model name, and for computed vectors the
  packages that produced them (``replicator.embedding.model_version``); store vectors carry
  ``<model>@store`` since the store records only the model name;
* ``embedding_source``: ``computed`` (by this sink or ``reembed``) or ``store`` (the store's own BLOB),
  or ``pending``: an entity of a snapshot whose vector is not computed yet, since the snapshot is
  likely to deliver the store's vector for it (its embeddings are read after the entities); the point
  holds ``PLACEHOLDER`` until then, and the sink computes the vector of every point still pending once
  its watermark passes the point's ``_seq`` (docs/qdrant.md, "Snapshots");
* ``_embedding_seq``: seq of the last store embedding change applied (0 if none).

Entity fields hold the event's values (docs/events.md, "Values") in ONE representation that is the
same in local mode and on a server, whose JSON has no infinity, NaN or bytes (qdrant-client's server
mode turns inf and NaN into null, which would look like a NULL): ``None``, ``int``, finite ``float``,
``str`` and lists of ``str`` as themselves; a non-finite float as ``{"$real": "inf" | "-inf" |
"nan"}``; bytes as ``{"$blob": "<hex>"}``. ``payload_value`` writes it, ``stored_value`` reads it back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import uuid
from collections.abc import Mapping
from typing import Any, Final

from replicator.embedding import DIMENSIONS
from replicator.position import SinkPosition
from replicator.store.schema import pack_vector, unpack_vector

ENTITY_FIELDS: Final = (
    "id", "name", "entity_type", "observations", "confidence", "strength", "version",
    "created_at", "updated_at", "valid_from", "valid_to", "metadata", "extra",
)  # fmt: skip
SEQ: Final = "_seq"
EMBEDDING_SEQ: Final = "_embedding_seq"
TEXT_SHA256: Final = "text_sha256"
EMBEDDING_MODEL: Final = "embedding_model"
EMBEDDING_MODEL_VERSION: Final = "embedding_model_version"
EMBEDDING_SOURCE: Final = "embedding_source"
COMPUTED: Final = "computed"
STORE: Final = "store"
PENDING: Final = "pending"
#: The vector of a pending point (a unit vector: cosine collections refuse a zero one).
PLACEHOLDER: Final = (1.0,) + (0.0,) * (DIMENSIONS - 1)
VECTOR_BYTES: Final = DIMENSIONS * 4

Payload = dict[str, Any]


def positions_collection(collection: str) -> str:
    """The collection holding sink positions and delete tombstones (design §5, §6)."""
    return f"{collection}_positions"


def position_point_id(sink: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "replicator:" + sink))


def position_of(payload: Mapping[str, Any]) -> SinkPosition:
    """The SinkPosition a position point's payload (``{"sink", "position"}``) holds (as JSON text, or
    as the object a server's JSON made of it)."""
    text = payload["position"]
    return SinkPosition.from_json(text if isinstance(text, str) else json.dumps(text))


def tombstone_point_id(store: str, entity_id: int) -> str:
    """A delete's tombstone in ``<collection>_positions`` (payload ``{"tombstone": id, "store",
    "_seq"}``): scoped to the store, as the collection is to the namespace. Versions before stores
    were named used ``replicator:tombstone:<id>``; those points are no longer read."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"replicator:tombstone:{store}:{entity_id}"))


def owner_point_id() -> str:
    """The point recording which store the collection replicates (payload ``{"owner", "store"}``)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "replicator:owner"))


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def store_label(model: str) -> str:
    """``embedding_model_version`` of a vector taken from the store (which records only the name)."""
    return f"{model}@store"


def vector_from_blob(blob: bytes) -> list[float]:
    """The store's BLOB (384 little-endian float32) as floats. Raises struct.error for another size."""
    if len(blob) != VECTOR_BYTES:
        raise struct.error(f"a vector BLOB of {len(blob)} bytes, not {VECTOR_BYTES}")
    return unpack_vector(blob)


def blob_from_vector(vector: list[float]) -> bytes:
    """Inverse of vector_from_blob (for comparing a point's vector with the store's bytes)."""
    if len(vector) != DIMENSIONS:
        raise struct.error(f"a vector of {len(vector)} dimensions, not {DIMENSIONS}")
    return pack_vector(vector)


def seq_of(payload: Payload | None, key: str = SEQ) -> int:
    return 0 if payload is None else int(payload.get(key) or 0)


REAL_TAG: Final = "$real"
BLOB_TAG: Final = "$blob"


def payload_value(value: object) -> object:
    """An event value as the payload holds it (module docstring). Pure."""
    if isinstance(value, float) and not math.isfinite(value):
        return {REAL_TAG: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, bytes | bytearray):
        return {BLOB_TAG: bytes(value).hex()}
    return value


def stored_value(value: object) -> object:
    """Inverse of payload_value. Pure."""
    if isinstance(value, dict) and len(value) == 1:
        if isinstance(value.get(REAL_TAG), str):
            return float(value[REAL_TAG])
        if isinstance(value.get(BLOB_TAG), str):
            return bytes.fromhex(value[BLOB_TAG])
    return value


def entity_values(payload: Payload) -> Payload:
    """The entity fields of a point's payload as the event carried them (tags read back). Pure."""
    return {name: stored_value(payload[name]) if name != "extra" else payload[name] for name in ENTITY_FIELDS
            if name in payload}  # fmt: skip


def vector_text(vector: Any) -> str | None:  # noqa: ANN401 - a client's vector, any shape
    """A point's vector as the sink's ``/points`` lists it: base64 of little-endian float32 (exact for
    Qdrant's float32 values); the only vector of a named-vector mapping; None without one."""
    if isinstance(vector, dict):
        vector = next(iter(vector.values()), None)
    if not isinstance(vector, list | tuple):
        return None
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def vector_from_text(text: str | None) -> tuple[float, ...] | None:
    """Inverse of vector_text. Raises ValueError for text that is not such a vector."""
    return vector_from_bytes(vector_bytes(text))


def vector_bytes(text: str | None) -> bytes | None:
    """The float32s of a ``/points`` vector, still packed: a reader holding every point keeps 1.5 KB
    per 384-d vector this way, not the ~12 KB of a tuple of Python floats. Raises ValueError for text
    that is not such a vector."""
    if text is None:
        return None
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 4:
        raise ValueError(f"a vector of {len(raw)} bytes is not float32s")
    return raw


def vector_from_bytes(raw: bytes | None) -> tuple[float, ...] | None:
    """The floats of :func:`vector_bytes`' answer."""
    return None if raw is None else struct.unpack(f"<{len(raw) // 4}f", raw)
