"""Confluent Schema Registry wire format, for deployments that run a registry.

Framing: ``0x00`` (magic) + the schema id as a 4-byte big-endian integer + the Avro binary body (no
single-object header). ``SchemaRegistryClient`` speaks the few REST calls needed (register a schema
under a subject, fetch a schema by id) with urllib and caches both answers; ``RegistryEncoder`` /
``RegistryDecoder`` pair it with the codecs of ``events/avro.py``. The decoder resolves whatever
writer schema the id names into the current reader schema of the same name (Avro resolution), as
``decode_any`` does for single-object messages.

Subjects: ``TopicNameStrategy`` (``<topic>-value``) by default, as Confluent's serializers; a change
topic also carries Heartbeats, so with that strategy the subject's compatibility must allow both
records (``NONE``), or use ``topic_record`` (``<topic>-<record full name>``, Confluent's
TopicRecordNameStrategy). Tested against an in-process fake of the REST API only: no real registry
was available where this was written.

Blocking (HTTP). Thread-safe caches. Raises SchemaError (bad frame, unknown schema) or RegistryError
(registry unreachable or refusing).
"""

from __future__ import annotations

import io
import json
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Final, Literal, cast

from fastavro import schemaless_reader
from fastavro.read import SchemaResolutionError
from fastavro.schema import parse_schema, to_parsing_canonical_form

from replicator.errors import Fatal, SchemaError
from replicator.events.avro import VALUE_SCHEMAS, Record, codec, codec_of

MAGIC: Final = 0
HEADER_LEN: Final = 5
_CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"


class RegistryError(Fatal):
    """The schema registry cannot be reached, or refused a request."""


def frame(schema_id: int, body: bytes) -> bytes:
    """Magic byte + 4-byte big-endian schema id + body. Pure. Raises SchemaError for an id outside 0..2^31-1."""
    if not 0 <= schema_id < 2**31:
        raise SchemaError(f"schema id {schema_id} does not fit the wire format", hint="ids are 0..2^31-1")
    return struct.pack(">bI", MAGIC, schema_id) + body


def unframe(data: bytes) -> tuple[int, bytes]:
    """(schema id, body) of a framed message. Pure. Raises SchemaError for bytes that are not framed."""
    if len(data) < HEADER_LEN or data[0] != MAGIC:
        raise SchemaError(
            f"not a Schema Registry framed message ({len(data)} bytes, starts {data[:5].hex() or 'empty'})",
            hint="the topic holds a message from another producer; route it to the dead-letter topic",
        )
    _, schema_id = struct.unpack(">bI", data[:HEADER_LEN])
    return int(schema_id), data[HEADER_LEN:]


class SchemaRegistryClient:
    """The REST calls the encoder/decoder need, with caches (a schema's id never changes)."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}
        self._lock = threading.Lock()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return cast(dict[str, Any], json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise RegistryError(
                f"schema registry {self.url} refused {method} {path}: HTTP {exc.code} {detail}",
                hint="check the subject's compatibility setting and the schema; see docs/events.md",
            ) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RegistryError(
                f"schema registry {self.url} unreachable for {method} {path}: {exc}",
                hint="check --schema-registry-url and that the registry is running",
            ) from exc

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` (Avro JSON text) under ``subject``; returns its id (the existing id if
        already registered). Cached per (subject, schema)."""
        key = (subject, schema)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        answer = self._call("POST", f"/subjects/{urllib.parse.quote(subject, safe='')}/versions", {"schema": schema})
        schema_id = int(answer["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._schemas[schema_id] = schema
        return schema_id

    def schema(self, schema_id: int) -> str:
        """The Avro JSON text of the schema with this id. Cached."""
        with self._lock:
            if schema_id in self._schemas:
                return self._schemas[schema_id]
        text = str(self._call("GET", f"/schemas/ids/{schema_id}")["schema"])
        with self._lock:
            self._schemas[schema_id] = text
        return text


def subject_for(topic: str, schema_name: str, strategy: Literal["topic", "topic_record"] = "topic") -> str:
    return f"{topic}-value" if strategy == "topic" else f"{topic}-{schema_name}"


class RegistryEncoder:
    """Encodes change events for one topic in the registry's wire format."""

    def __init__(
        self, client: SchemaRegistryClient, topic: str, strategy: Literal["topic", "topic_record"] = "topic"
    ) -> None:
        self.client = client
        self.topic = topic
        self.strategy = strategy

    def encode(self, schema_name: str, record: Record) -> bytes:
        """Register the schema (once) and frame the record. Raises SchemaError or RegistryError."""
        c = codec(schema_name)
        schema_id = self.client.register(
            subject_for(self.topic, schema_name, self.strategy), to_parsing_canonical_form(c.schema)
        )
        body = c.encode(record)[len(c.header) :]
        return frame(schema_id, body)


class RegistryDecoder:
    """Decodes framed change events into the current schema of the same name (Avro resolution)."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self.client = client
        self._parsed: dict[int, tuple[str, Any]] = {}

    def decode(self, data: bytes) -> tuple[str, Record]:
        """(schema name, record). Raises SchemaError (bad frame, a schema this replicator does not
        know, corrupt body) or RegistryError."""
        schema_id, body = unframe(data)
        if schema_id not in self._parsed:
            raw = json.loads(self.client.schema(schema_id))
            name = str(raw.get("name", "")) if isinstance(raw, dict) else ""
            if name and "." not in name and raw.get("namespace"):
                name = f"{raw['namespace']}.{name}"
            if name not in VALUE_SCHEMAS:
                raise SchemaError(
                    f"schema id {schema_id} is {name or 'not a named record'}, not a change event this replicator "
                    "knows",
                    hint="a foreign producer wrote it; it goes to the dead-letter topic",
                )
            self._parsed[schema_id] = (name, parse_schema(raw, _write_hint=False))
        name, writer = self._parsed[schema_id]
        try:
            record = schemaless_reader(io.BytesIO(body), writer, codec(name).schema)
        except (EOFError, struct.error, ValueError, IndexError, SchemaResolutionError) as exc:
            raise SchemaError(
                f"corrupt {name} message body (schema id {schema_id}): {exc}",
                hint="the message is truncated, damaged or written with an incompatible schema; DLQ it",
            ) from exc
        return name, cast(Record, record)


class Reframer:
    """Turns this replicator's single-object messages into Confluent-framed ones for ``topic``:
    what the source's producer does when a Schema Registry is configured. Values only: keys stay
    ``caxton.memory.Key`` in single-object encoding. Blocks on the first registration of each
    (subject, schema); raises RegistryError (registry unreachable) or SchemaError (foreign bytes)."""

    def __init__(self, client: SchemaRegistryClient, strategy: Literal["topic", "topic_record"] = "topic") -> None:
        self.client = client
        self.strategy = strategy

    def __call__(self, topic: str, value: bytes) -> bytes:
        found = codec_of(value)
        if found is None:
            raise SchemaError(
                f"cannot frame a message for {topic}: not one of this replicator's schemas",
                hint="a bug: the source only produces change events, heartbeats and keys",
            )
        schema_id = self.client.register(
            subject_for(topic, found.name, self.strategy), to_parsing_canonical_form(found.schema)
        )
        return frame(schema_id, value[len(found.header) :])
