"""Avro codec for change events, in Avro's *single-object encoding*.

Every message value is ``C3 01`` + the schema's 8-byte CRC-64-AVRO fingerprint (little-endian) + the
binary-encoded record. The fingerprint lets a consumer refuse bytes written with another schema (a
poison event, a foreign producer) with a clear error, without a schema registry.

Pure functions: no I/O besides reading the schema files once (cached).
"""

from __future__ import annotations

import io
import struct
from functools import cache
from importlib import resources
from typing import Any, Final, cast

from fastavro import schemaless_reader, schemaless_writer
from fastavro.repository.base import SchemaRepositoryError
from fastavro.schema import SchemaParseException, fingerprint, load_schema, to_parsing_canonical_form

from replicator.errors import SchemaError

ENTITY_CHANGE: Final = "caxton.memory.EntityChange"
RELATION_CHANGE: Final = "caxton.memory.RelationChange"
EMBEDDING_CHANGE: Final = "caxton.memory.EmbeddingChange"
HEARTBEAT: Final = "caxton.memory.Heartbeat"
KEY: Final = "caxton.memory.Key"
#: Every schema a change topic may carry, in the order a decoder tries their fingerprints.
VALUE_SCHEMAS: Final = (ENTITY_CHANGE, RELATION_CHANGE, EMBEDDING_CHANGE, HEARTBEAT)

_MAGIC: Final = b"\xc3\x01"
_HEADER_LEN: Final = len(_MAGIC) + 8

Record = dict[str, Any]


class Codec:
    """Encodes and decodes one named schema. Immutable and thread-safe once built."""

    def __init__(self, name: str, schema: Any) -> None:  # noqa: ANN401 - fastavro's parsed schema is untyped
        self.name = name
        self.schema = schema
        self.fingerprint = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        # The spec stores the 64-bit fingerprint little-endian; fastavro returns it big-endian as hex.
        self.header = _MAGIC + self.fingerprint[::-1]

    def encode(self, record: Record) -> bytes:
        """Serialise ``record``. Raises SchemaError if it does not fit the schema."""
        out = io.BytesIO()
        out.write(self.header)
        try:
            schemaless_writer(out, self.schema, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError) as exc:
            raise SchemaError(
                f"record does not fit {self.name}: {exc}",
                hint="build events with the fields and types declared in schemas/" + self.name + ".avsc",
            ) from exc
        return out.getvalue()

    def decode(self, data: bytes) -> Record:
        """Deserialise ``data``. Raises SchemaError naming the problem for foreign or truncated bytes."""
        if len(data) < _HEADER_LEN or data[:2] != _MAGIC:
            raise SchemaError(
                f"not an Avro single-object message for {self.name} ({len(data)} bytes, "
                f"starts {data[:4].hex() or 'empty'})",
                hint="the topic holds a message from another producer; route it to the dead-letter topic",
            )
        if data[:_HEADER_LEN] != self.header:
            raise SchemaError(
                f"message was written with schema fingerprint {data[2:_HEADER_LEN][::-1].hex()}, "
                f"expected {self.fingerprint.hex()} ({self.name})",
                hint="producer and consumer run different schema versions; upgrade the older side",
            )
        try:
            record = cast(Record, schemaless_reader(io.BytesIO(data[_HEADER_LEN:]), self.schema, None))
        except (EOFError, struct.error, ValueError, IndexError) as exc:
            raise SchemaError(
                f"corrupt {self.name} message body ({len(data)} bytes): {exc}",
                hint="the message is truncated or damaged; route it to the dead-letter topic",
            ) from exc
        return record


@cache
def codec(name: str) -> Codec:
    """The codec for a named schema from ``schemas/``, e.g. ``codec(ENTITY_CHANGE)``. Raises SchemaError."""
    path = resources.files("replicator") / "schemas" / f"{name}.avsc"
    try:
        with resources.as_file(path) as file:
            schema = load_schema(str(file))
    except (FileNotFoundError, SchemaRepositoryError) as exc:
        raise SchemaError(
            f"no Avro schema named {name} (looked for {path})",
            hint="reinstall the package; schemas/ ships inside it as replicator/schemas",
        ) from exc
    except SchemaParseException as exc:
        raise SchemaError(f"schema {name} is invalid: {exc}", hint="fix the .avsc file in schemas/") from exc
    return Codec(name, schema)


@cache
def _by_fingerprint() -> dict[bytes, Codec]:
    return {c.header: c for c in (codec(name) for name in VALUE_SCHEMAS)}


def decode_any(data: bytes) -> tuple[str, Record]:
    """Decode a value of any change topic: returns (schema name, record).

    The single-object header names the writer schema, so one consumer can read entity, relation,
    embedding and heartbeat messages from the same partition. Pure. Raises SchemaError for bytes
    that are not single-object Avro, carry an unknown fingerprint, or have a corrupt body.
    """
    found = _by_fingerprint().get(data[:_HEADER_LEN])
    if found is None:
        known = ", ".join(f"{c.name}={c.fingerprint.hex()}" for c in _by_fingerprint().values())
        shown = data[2:_HEADER_LEN][::-1].hex() if data[:2] == _MAGIC else f"starts {data[:4].hex() or 'empty'}"
        raise SchemaError(
            f"not a change event this replicator knows ({len(data)} bytes, fingerprint {shown}; knows {known})",
            hint="a foreign producer or a newer schema version wrote it; it goes to the dead-letter topic",
        )
    return found.name, found.decode(data)


def encode_key(row_id: int) -> bytes:
    """The Kafka key of a change event: the row id in the Key schema. Pure."""
    return codec(KEY).encode({"id": row_id})


def decode_key(data: bytes) -> int:
    """Inverse of encode_key. Raises SchemaError."""
    return int(codec(KEY).decode(data)["id"])
