"""Changelog rows and snapshot rows -> Kafka messages (topic, key, Avro value, headers). Pure.

A row reaches it as its state read by columns (``store.StoreReader``: the stream's rows and the
snapshot's, written in one pass by ``state_events.encode_state`` unless a value is odd), or as a JSON
image (``replicator/capture/triggers.py``: older changelogs, a table with columns capture does not
know); ``row_record`` reads both the same way. Mapping (docs/design.md §2):

* ``observations``: the writer's JSON text -> list of strings. Text that is not a JSON array of
  strings is never dropped and never stops the source: a JSON array has its non-string items
  carried as their JSON text; anything else (invalid JSON, an object, a number) becomes a
  single-element list holding the raw text, and ``Conversion.warnings`` names the row so the
  daemon logs it. The sinks then hold exactly what the writer stored, visibly.
* ``embedding``: hex -> bytes (``vector``); ``text`` = "{name} {entity_type} {observations joined
  by spaces}" from the ``text_*`` fields captured beside it (None when the entity was gone).
* relations carry ``from_entity_name`` / ``to_entity_name`` as captured.
* columns unknown to STORE.md (added by the writer after install) -> ``extra``: column -> the JSON
  text of the ``[typeof, value]`` pair the trigger stored, so the SQLite type survives.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Final

from replicator.capture.image import ImageValueError, Value, sqlite_type, typed_value_of, value_of
from replicator.capture.triggers import KNOWN_COLUMNS
from replicator.errors import Poison
from replicator.events import headers as record_headers
from replicator.events.avro import (
    HEARTBEAT,
    Record,
    codec,
    encode_key,
)
from replicator.events.envelope import change_record, heartbeat_record, source_record
from replicator.events.values import embedding_text, observations_value, parse_observations
from replicator.source.state_events import HEARTBEAT_KEY_ID, RECORD_OF, SCHEMA_OF, encode_state
from replicator.store.schema import ENTITY_COLUMNS, RELATION_COLUMNS
from replicator.transport.topics import change_topic

__all__ = ["parse_observations"]  # re-exported: its home is events/values.py

#: Fields the images carry beside the table's columns (resolved at capture time).
DERIVED: Final = {
    "entities": frozenset[str](),
    "relations": frozenset({"from_entity_name", "to_entity_name"}),
    "embeddings": frozenset({"text_name", "text_type", "text_observations"}),
}

Headers = record_headers.Headers


class Unfit(Poison):
    """A row no change event can carry exactly; the message names the table, id, column and value.
    The source parks such a row (source/parking.py) instead of stopping on it."""


@dataclass(frozen=True)
class Message:
    """One Kafka record to produce. ``partition`` None lets the partitioner hash the key."""

    topic: str
    key: bytes
    value: bytes | None
    headers: Headers
    partition: int | None = None


#: A row's state as the source read it by columns (``store.StoreReader``): column -> the SQLite value
#: (None, int, float, str, bytes), the embedding a BLOB or a ``[typeof, value]`` pair, plus the looked-up
#: fields. ``capture.image.value_of`` reads these as it reads an image's renderings.
State = dict[str, Any]


@dataclass(frozen=True)
class ChangelogRow:
    seq: int
    table: str
    op: str  # c | u | d
    row_id: int
    ts_ms: int
    before: str | None  # JSON image
    after: str | State | None  # JSON image, or the state read by columns


@dataclass
class Conversion:
    """Messages for a row (the event, plus a tombstone after a ``d``) and any warnings to log."""

    messages: list[Message] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _record_fields(change: str, record: str) -> dict[str, frozenset[str]]:
    """Field -> the Avro types its (union) type accepts, from the schema itself: the one definition."""
    found: dict[str, frozenset[str]] = {}

    def walk(node: object) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if node.get("type") == "record" and node.get("name") == record:
                for f in node["fields"]:
                    branches = f["type"] if isinstance(f["type"], list) else [f["type"]]
                    found[f["name"]] = frozenset(b if isinstance(b, str) else str(b.get("type")) for b in branches)
                return
            for key in ("fields", "type"):
                walk(node.get(key))

    walk(codec(change).schema)
    return found


_RECORD: Final = RECORD_OF
_AVRO_TYPE: Final = {type(None): "null", int: "long", float: "double", str: "string", bytes: "bytes"}
_FIELD_TYPES: Final = {table: _record_fields(SCHEMA_OF[table], _RECORD[table]) for table in SCHEMA_OF}


def _extra(table: str, image: dict[str, Any]) -> dict[str, str] | None:
    known = set(KNOWN_COLUMNS[table]) | DERIVED[table]
    extra = {k: json.dumps(v) for k, v in image.items() if k not in known}
    return extra or None


class _Row:
    """Reads one image's columns as the exact values the record's fields accept, or raises Unfit.
    Union values come as fastavro's ``(branch, value)`` tuples: the branch is named, never guessed
    (b"" would pass for an empty array), and the writer skips trying each branch in turn."""

    def __init__(self, table: str, image: dict[str, Any], where: str) -> None:
        self.table, self.image, self.where = table, image, where

    def check(self, column: str, value: Value, field: str | None = None) -> tuple[str, Value]:
        branch = _AVRO_TYPE[type(value)]
        if branch not in _FIELD_TYPES[self.table][field or column]:
            shown = sqlite_type(value).upper() + ("" if value is None else f" {value!r:.60}")
            raise Unfit(f"{self.where}: {column} holds {shown}, which no {_RECORD[self.table]} event carries")
        return branch, value

    def value(self, column: str) -> tuple[str, Value]:
        try:
            return self.check(column, value_of(self.image.get(column)))
        except ImageValueError as exc:
            raise Unfit(f"{self.where}: {column} holds {exc}") from exc

    def key(self, column: str, *, own: bool = True) -> int:
        try:
            value = value_of(self.image.get(column))
        except ImageValueError as exc:
            raise Unfit(f"{self.where}: {column} holds {exc}") from exc
        if not isinstance(value, int):  # a relation endpoint: the rowid keys are INTEGER by construction
            raise Unfit(f"{self.where}: {column} holds {sqlite_type(value).upper()} {value!r:.60}, not an entity id")
        if own and value == HEARTBEAT_KEY_ID:
            raise Unfit(
                f"{self.where}: {column} is {HEARTBEAT_KEY_ID}, the key heartbeats use on the change topics "
                "(their compaction would drop this row's events)"
            )
        return value

    def derived(self, column: str) -> tuple[str, str | bytes | None]:
        """A field resolved at capture time (an entity's name beside a relation): never parks its row;
        TEXT that is not UTF-8 comes as its bytes."""
        rendered = self.image.get(column)
        try:
            value = value_of(rendered)
        except ImageValueError:
            return "bytes", str(rendered).encode("utf-8", "surrogateescape")
        if not (isinstance(value, str | bytes) or value is None):
            value = json.dumps(value)
        return _AVRO_TYPE[type(value)], value

    def lenient(self, column: str) -> object:
        try:
            return value_of(self.image.get(column))
        except ImageValueError:
            return str(self.image.get(column)).encode("utf-8", "surrogateescape")

    def fields(self, columns: tuple[str, ...]) -> Record:
        return {column: self.value(column) for column in columns}


_ENTITY_FIELDS: Final = tuple(c for c in ENTITY_COLUMNS[1:] if c != "observations")
_RELATION_FIELDS: Final = tuple(c for c in RELATION_COLUMNS if c not in ("id", "from_entity_id", "to_entity_id"))


def row_record(table: str, image: dict[str, Any], warnings: list[str], where: str) -> Record:
    """One table row's image -> the Entity / Relation / Embedding record, every value exactly as the
    store holds it (docs/events.md, "Values"). Raises Unfit for a value no event carries exactly."""
    row = _Row(table, image, where)
    extra = _extra(table, image)
    if table == "entities":
        try:
            observations = observations_value(row.value("observations")[1])
        except TypeError as exc:
            raise Unfit(f"{where}: {exc}") from exc
        if not isinstance(observations, list):
            warnings.append(f"{where}: observations are not a JSON array of strings; carried exactly as stored")
        branch = "array" if isinstance(observations, list) else _AVRO_TYPE[type(observations)]
        fields = row.fields(_ENTITY_FIELDS)
        return {"id": row.key("id"), **fields, "observations": (branch, observations), "extra": extra}
    if table == "relations":
        fields = row.fields(_RELATION_FIELDS)
        return {
            "id": row.key("id"), "from_entity_id": row.key("from_entity_id", own=False),
            "to_entity_id": row.key("to_entity_id", own=False),
            "from_entity_name": row.derived("from_entity_name"), "to_entity_name": row.derived("to_entity_name"),
            **fields, "extra": extra,
        }  # fmt: skip
    if table == "embeddings":
        text = None
        if image.get("text_name") is not None:
            text = embedding_text(row.lenient("text_name"), row.lenient("text_type"), row.lenient("text_observations"))
        try:
            vector = row.check("embedding", typed_value_of(image.get("embedding")), "vector")
        except ImageValueError as exc:
            raise Unfit(f"{where}: embedding holds {exc}") from exc
        return {
            "entity_id": row.key("entity_id"), "vector": vector, **row.fields(("model_version", "created_at")),
            "text": ("null", None) if text is None else ("string", text), "extra": extra,
        }  # fmt: skip
    raise ValueError(f"not a captured table: {table!r}")


def headers(table: str, seq: int, snapshot_seq: int | None = None) -> Headers:
    return record_headers.make(table, seq, snapshot_seq)


def _load(image: str | State | None, where: str) -> dict[str, Any] | None:
    if image is None or isinstance(image, dict):
        return image
    value = json.loads(image)
    if not isinstance(value, dict):
        raise TypeError(f"{where}: image is not a JSON object")
    return value


def convert_change(row: ChangelogRow, *, prefix: str, store_id: str, produced_ms: int | None = None) -> Conversion:
    """A changelog row -> its event (and a tombstone after ``d``). Raises SchemaError/ValueError only
    for an image the triggers cannot have produced (e.g. a missing key column)."""
    produced = now_ms() if produced_ms is None else produced_ms
    if row.before is None and isinstance(row.after, dict) and row.op in ("c", "u"):  # the stream's common case
        value = encode_state(row.table, row.op, row.after, store_id=store_id, seq=row.seq, ts_ms=row.ts_ms,
                             produced_ms=produced)  # fmt: skip
        if value is not None:
            key = encode_key(row.row_id)
            return Conversion([Message(change_topic(prefix, row.table), key, value, headers(row.table, row.seq))])
    out = Conversion()
    where = f"changelog seq {row.seq} ({row.table} {row.op} id {row.row_id})"
    before = _load(row.before, where)
    after = _load(row.after, where)
    record = change_record(
        row.op,
        None if before is None else (_RECORD[row.table], row_record(row.table, before, out.warnings, where)),
        None if after is None else (_RECORD[row.table], row_record(row.table, after, out.warnings, where)),
        source_record(store_id, row.table, row.seq, row.ts_ms),
        produced,
    )
    topic = change_topic(prefix, row.table)
    key = encode_key(row.row_id)
    hdrs = headers(row.table, row.seq)
    out.messages.append(Message(topic, key, codec(SCHEMA_OF[row.table]).encode(record), hdrs))
    if row.op == "d":
        out.messages.append(Message(topic, key, None, hdrs))
    return out


def convert_snapshot_row(
    table: str,
    image_json: str | State,
    *,
    prefix: str,
    store_id: str,
    read_seq: int,
    last: bool,
    produced_ms: int | None = None,
) -> Conversion:
    """A row read by the snapshot (its state read by columns, or its image built like the trigger's)
    -> an ``op=r`` event at ``read_seq``."""
    out = Conversion()
    image = _load(image_json, f"snapshot of {table}")
    assert image is not None
    row_id = int(image["entity_id" if table == "embeddings" else "id"])
    ts = now_ms() if produced_ms is None else produced_ms
    marker = "last" if last else "true"
    topic, key, hdrs = change_topic(prefix, table), encode_key(row_id), headers(table, read_seq)
    if isinstance(image_json, dict):  # read by columns: the one-pass writer, unless a value is odd
        value = encode_state(table, "r", image_json, store_id=store_id, seq=read_seq, ts_ms=ts, produced_ms=ts,
                             snapshot=marker)  # fmt: skip
        if value is not None:
            return Conversion([Message(topic, key, value, hdrs)])
    record = change_record(
        "r",
        None,
        (_RECORD[table], row_record(table, image, out.warnings, f"snapshot {table} id {row_id}")),
        source_record(store_id, table, read_seq, ts, marker),
        ts,
    )
    out.messages.append(Message(topic, key, codec(SCHEMA_OF[table]).encode(record), hdrs))
    return out


def heartbeat_messages(
    *,
    prefix: str,
    store_id: str,
    seq: int,
    seen_ms: int,
    partitions: dict[str, int],
    produced_ms: int | None = None,
    snapshot_seq: int | None = None,
) -> list[Message]:
    """One Heartbeat per partition of every change topic (``partitions``: table -> count), design §4.
    ``snapshot_seq``: the snapshot the stream follows (header ``replicator.snapshot``), when known."""
    ts = now_ms() if produced_ms is None else produced_ms
    key = encode_key(HEARTBEAT_KEY_ID)
    out: list[Message] = []
    for table, count in partitions.items():
        value = codec(HEARTBEAT).encode(heartbeat_record(source_record(store_id, table, seq, seen_ms), ts))
        hdrs = headers("heartbeat", seq, snapshot_seq)
        out.extend(Message(change_topic(prefix, table), key, value, hdrs, partition=p) for p in range(count))
    return out


def position_value(seq: int, snapshot: dict[str, Any] | None, ts_ms: int, snapshot_seq: int | None = None) -> bytes:
    """The source position record (positions topic): JSON ``{"seq", "snapshot", "ts_ms"}`` and, when
    known, ``snapshot_seq`` (the first read seq of the snapshot the stream follows)."""
    value: dict[str, Any] = {"seq": seq, "snapshot": snapshot, "ts_ms": ts_ms}
    if snapshot_seq is not None:
        value["snapshot_seq"] = snapshot_seq
    return json.dumps(value, sort_keys=True).encode()
