"""Avro codec for change events, in Avro's *single-object encoding*.

Every message value is ``C3 01`` + the schema's 8-byte CRC-64-AVRO fingerprint (little-endian) + the
binary-encoded record. The fingerprint names the writer schema without a schema registry: a consumer
decodes messages written with the current schemas *or with an older version* of them (kept in
``schemas/history/``, one file per retired version), resolving the old writer schema into the
current reader schema by Avro's rules (a field added since is filled with its default). Bytes with
any other fingerprint (a poison event, a foreign producer, a newer schema) are refused with a clear
error. Evolution rules: docs/events.md. Confluent Schema Registry framing: ``events/registry.py``.

Pure functions: no I/O besides reading the schema files once (cached).
"""

from __future__ import annotations

import io
import json
import struct
from functools import cache
from importlib import resources
from typing import Any, Final, cast

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.repository.base import SchemaRepositoryError
from fastavro.schema import SchemaParseException, fingerprint, load_schema, parse_schema, to_parsing_canonical_form

from replicator.errors import SchemaError
from replicator.events.binary import Unwritable, long_bytes

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
        """Deserialise ``data`` (written with this schema or an older version of it, see
        ``schemas/history/``) into this schema's shape. Raises SchemaError naming the problem for
        foreign or truncated bytes."""
        if len(data) < _HEADER_LEN or data[:2] != _MAGIC:
            raise SchemaError(
                f"not an Avro single-object message for {self.name} ({len(data)} bytes, "
                f"starts {data[:4].hex() or 'empty'})",
                hint="the topic holds a message from another producer; route it to the dead-letter topic",
            )
        writer = self.schema
        if data[:_HEADER_LEN] != self.header:
            old = history().get(data[:_HEADER_LEN])
            if old is not None and old.name == self.name:
                writer = old.schema
        if writer is self.schema and data[:_HEADER_LEN] != self.header:
            raise SchemaError(
                f"message was written with schema fingerprint {data[2:_HEADER_LEN][::-1].hex()}, "
                f"expected {self.fingerprint.hex()} ({self.name})",
                hint="producer and consumer run different schema versions; upgrade the older side",
            )
        try:
            reader = None if writer is self.schema else self.schema
            record = cast(Record, schemaless_reader(io.BytesIO(data[_HEADER_LEN:]), writer, reader))
        except (EOFError, struct.error, ValueError, IndexError, SchemaResolutionError) as exc:
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
def history() -> dict[bytes, Codec]:
    """Retired writer schemas from ``schemas/history/*.avsc`` (fully expanded, one per file), by their
    single-object header. Each file's ``name`` is the schema it is an older version of. Raises SchemaError."""
    found: dict[bytes, Codec] = {}
    folder = resources.files("replicator") / "schemas" / "history"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name) if folder.is_dir() else []:
        if not entry.name.endswith(".avsc"):
            continue
        try:
            raw = json.loads(entry.read_text(encoding="utf-8"))
            old = Codec(str(raw["name"]), parse_schema(raw, _write_hint=False))
        except (ValueError, KeyError, SchemaParseException) as exc:
            raise SchemaError(f"history schema {entry.name} is invalid: {exc}", hint="fix schemas/history/") from exc
        found[old.header] = old
    return found


@cache
def _by_fingerprint() -> dict[bytes, Codec]:
    """Header -> the codec that decodes it: current schemas, and retired versions (resolved into the
    current schema of the same name)."""
    current = {c.header: c for c in (codec(name) for name in VALUE_SCHEMAS)}
    retired = {header: codec(old.name) for header, old in history().items() if old.name in VALUE_SCHEMAS}
    return {**retired, **current}


def codec_of(data: bytes) -> Codec | None:
    """The codec whose single-object header starts ``data`` (current schemas), or None. Pure."""
    return _by_fingerprint().get(data[:_HEADER_LEN])


def decode_any(data: bytes) -> tuple[str, Record]:
    """Decode a value of any change topic: returns (schema name, record).

    The single-object header names the writer schema, so one consumer can read entity, relation,
    embedding and heartbeat messages from the same partition, and messages written with an older
    version of a schema (``schemas/history/``) come back in the current schema's shape. Pure.
    Raises SchemaError for bytes that are not single-object Avro, carry an unknown fingerprint, or
    have a corrupt body.
    """
    found = _by_fingerprint().get(data[:_HEADER_LEN])
    if found is None:
        known = ", ".join(f"{c.name}={c.fingerprint.hex()}" for c in (codec(n) for n in VALUE_SCHEMAS))
        shown = data[2:_HEADER_LEN][::-1].hex() if data[:2] == _MAGIC else f"starts {data[:4].hex() or 'empty'}"
        raise SchemaError(
            f"not a change event this replicator knows ({len(data)} bytes, fingerprint {shown}; knows {known})",
            hint="a foreign producer or a newer schema version wrote it; it goes to the dead-letter topic",
        )
    return found.name, found.decode(data)


def encode_key(row_id: int) -> bytes:
    """The Kafka key of a change event: the row id in the Key schema. Pure. Written directly (one
    per event: fastavro's per-call cost was most of it); the same bytes as ``codec(KEY).encode``."""
    if row_id.__class__ is int:
        try:
            return codec(KEY).header + long_bytes(row_id)
        except Unwritable:
            pass  # out of range: fastavro names the problem
    return codec(KEY).encode({"id": row_id})


def decode_key(data: bytes) -> int:
    """Inverse of encode_key. Raises SchemaError."""
    return int(codec(KEY).decode(data)["id"])
