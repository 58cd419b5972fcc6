"""Changelog rows and snapshot rows -> Kafka messages (topic, key, Avro value, headers). Pure.

A row image is the JSON object the capture triggers build (``replicator/capture/triggers.py``); the
snapshot builds the very same image with the same SQL shape (``capture.triggers.image_sql``), so one converter
serves both. Mapping (docs/design.md §2):

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

from replicator import __version__
from replicator.capture.triggers import KNOWN_COLUMNS
from replicator.embedding import entity_text
from replicator.events import headers as record_headers
from replicator.events.avro import (
    EMBEDDING_CHANGE,
    ENTITY_CHANGE,
    HEARTBEAT,
    RELATION_CHANGE,
    Record,
    codec,
    encode_key,
)

CONNECTOR: Final = "caxton-sqlite"
SCHEMA_OF: Final = {"entities": ENTITY_CHANGE, "relations": RELATION_CHANGE, "embeddings": EMBEDDING_CHANGE}
#: Fields the images carry beside the table's columns (resolved at capture time).
DERIVED: Final = {
    "entities": frozenset[str](),
    "relations": frozenset({"from_entity_name", "to_entity_name"}),
    "embeddings": frozenset({"text_name", "text_type", "text_observations"}),
}
HEARTBEAT_KEY_ID: Final = -1

Headers = record_headers.Headers


@dataclass(frozen=True)
class Message:
    """One Kafka record to produce. ``partition`` None lets the partitioner hash the key."""

    topic: str
    key: bytes
    value: bytes | None
    headers: Headers
    partition: int | None = None


@dataclass(frozen=True)
class ChangelogRow:
    seq: int
    table: str
    op: str  # c | u | d
    row_id: int
    ts_ms: int
    before: str | None  # JSON image
    after: str | None


@dataclass
class Conversion:
    """Messages for a row (the event, plus a tombstone after a ``d``) and any warnings to log."""

    messages: list[Message] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def topic_of(prefix: str, table: str) -> str:
    return f"{prefix}.{table}"


def parse_observations(text: object) -> tuple[list[str], bool]:
    """The writer's observations JSON text -> (list, True), or the fallback described above -> (list, False)."""
    text = unmark(text)
    if text is None:
        return [], True
    if not isinstance(text, str):
        return [json.dumps(text)], False
    try:
        value = json.loads(text)
    except ValueError:
        return [text], False
    if not isinstance(value, list):
        return [text], False
    items = [item if isinstance(item, str) else json.dumps(item) for item in value]
    return items, all(isinstance(item, str) for item in value)


def unmark(value: object) -> object:
    """Capture marks what JSON text cannot hold: ``["text", HEX]`` (text with a NUL character, exact)
    and ``["blob", HEX]`` (a BLOB in a text column, carried as its bytes decoded leniently)."""
    if isinstance(value, list) and len(value) == 2 and value[0] in ("text", "blob") and isinstance(value[1], str):
        try:
            raw = bytes.fromhex(value[1])
        except ValueError:
            return value
        return raw.decode("utf-8", "strict" if value[0] == "text" else "backslashreplace")
    return value


def _str(value: object) -> str:
    value = unmark(value)
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _float(value: object, default: float) -> float:
    return default if value is None else float(value)  # type: ignore[arg-type]


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _text_or_none(value: object) -> str | None:
    value = unmark(value)
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _extra(table: str, image: dict[str, Any]) -> dict[str, str] | None:
    known = set(KNOWN_COLUMNS[table]) | DERIVED[table]
    extra = {k: json.dumps(v) for k, v in image.items() if k not in known}
    return extra or None


def row_record(table: str, image: dict[str, Any], warnings: list[str], where: str) -> Record:
    """One table row's image -> the Entity / Relation / Embedding record."""
    extra = _extra(table, image)
    if table == "entities":
        observations, ok = parse_observations(image.get("observations"))
        if not ok:
            warnings.append(f"{where}: observations are not a JSON array of strings; carried as {observations!r}")
        return {
            "id": int(image["id"]),
            "name": _str(image.get("name")),
            "entity_type": _str(image.get("entity_type")),
            "observations": observations,
            "confidence": _float(image.get("confidence"), 1.0),
            "strength": _float(image.get("strength"), 1.0),
            "version": 1 if image.get("version") is None else int(image["version"]),
            "created_at": int(image.get("created_at") or 0),
            "updated_at": int(image.get("updated_at") or 0),
            "valid_from": _int_or_none(image.get("valid_from")),
            "valid_to": _int_or_none(image.get("valid_to")),
            "metadata": _text_or_none(image.get("metadata")),
            "extra": extra,
        }
    if table == "relations":
        return {
            "id": int(image["id"]),
            "from_entity_id": int(image["from_entity_id"]),
            "to_entity_id": int(image["to_entity_id"]),
            "from_entity_name": _text_or_none(image.get("from_entity_name")),
            "to_entity_name": _text_or_none(image.get("to_entity_name")),
            "relation_type": _str(image.get("relation_type")),
            "strength": _float(image.get("strength"), 1.0),
            "confidence": _float(image.get("confidence"), 1.0),
            "created_at": int(image.get("created_at") or 0),
            "updated_at": int(image.get("updated_at") or 0),
            "valid_from": _int_or_none(image.get("valid_from")),
            "valid_to": _int_or_none(image.get("valid_to")),
            "metadata": _text_or_none(image.get("metadata")),
            "extra": extra,
        }
    if table == "embeddings":
        text = None
        if image.get("text_name") is not None:
            observations, ok = parse_observations(image.get("text_observations"))
            if not ok:
                warnings.append(f"{where}: the entity's observations are not a JSON array of strings")
            text = entity_text(_str(image["text_name"]), _str(image.get("text_type")), observations)
        return {
            "entity_id": int(image["entity_id"]),
            "vector": bytes.fromhex(str(image.get("embedding") or "")),
            "model_version": _str(image.get("model_version")),
            "created_at": int(image.get("created_at") or 0),
            "text": text,
            "extra": extra,
        }
    raise ValueError(f"not a captured table: {table!r}")


def headers(table: str, seq: int, snapshot_seq: int | None = None) -> Headers:
    return record_headers.make(table, seq, snapshot_seq)


def source_record(store_id: str, table: str, seq: int, ts_ms: int, snapshot: str = "false") -> Record:
    return {
        "connector": CONNECTOR,
        "version": __version__,
        "store": store_id,
        "table": table,
        "seq": seq,
        "snapshot": snapshot,
        "ts_ms": ts_ms,
    }


def _load(image: str | None, where: str) -> dict[str, Any] | None:
    if image is None:
        return None
    value = json.loads(image)
    if not isinstance(value, dict):
        raise TypeError(f"{where}: image is not a JSON object")
    return value


def convert_change(row: ChangelogRow, *, prefix: str, store_id: str, produced_ms: int | None = None) -> Conversion:
    """A changelog row -> its event (and a tombstone after ``d``). Raises SchemaError/ValueError only
    for an image the triggers cannot have produced (e.g. a missing key column)."""
    out = Conversion()
    where = f"changelog seq {row.seq} ({row.table} {row.op} id {row.row_id})"
    before = _load(row.before, where)
    after = _load(row.after, where)
    record: Record = {
        "op": row.op,
        "before": None if before is None else row_record(row.table, before, out.warnings, where),
        "after": None if after is None else row_record(row.table, after, out.warnings, where),
        "source": source_record(store_id, row.table, row.seq, row.ts_ms),
        "ts_ms": now_ms() if produced_ms is None else produced_ms,
    }
    topic = topic_of(prefix, row.table)
    key = encode_key(row.row_id)
    hdrs = headers(row.table, row.seq)
    out.messages.append(Message(topic, key, codec(SCHEMA_OF[row.table]).encode(record), hdrs))
    if row.op == "d":
        out.messages.append(Message(topic, key, None, hdrs))
    return out


def convert_snapshot_row(
    table: str,
    image_json: str,
    *,
    prefix: str,
    store_id: str,
    read_seq: int,
    last: bool,
    produced_ms: int | None = None,
) -> Conversion:
    """A row read by the snapshot (image built like the trigger's) -> an ``op=r`` event at ``read_seq``."""
    out = Conversion()
    image = _load(image_json, f"snapshot of {table}")
    assert image is not None
    row_id = int(image["entity_id" if table == "embeddings" else "id"])
    ts = now_ms() if produced_ms is None else produced_ms
    record: Record = {
        "op": "r",
        "before": None,
        "after": row_record(table, image, out.warnings, f"snapshot {table} id {row_id}"),
        "source": source_record(store_id, table, read_seq, ts, "last" if last else "true"),
        "ts_ms": ts,
    }
    out.messages.append(
        Message(
            topic_of(prefix, table),
            encode_key(row_id),
            codec(SCHEMA_OF[table]).encode(record),
            headers(table, read_seq),
        )
    )
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
        value = codec(HEARTBEAT).encode({"source": source_record(store_id, table, seq, seen_ms), "ts_ms": ts})
        hdrs = headers("heartbeat", seq, snapshot_seq)
        out.extend(Message(topic_of(prefix, table), key, value, hdrs, partition=p) for p in range(count))
    return out


def position_value(seq: int, snapshot: dict[str, Any] | None, ts_ms: int, snapshot_seq: int | None = None) -> bytes:
    """The source position record (positions topic): JSON ``{"seq", "snapshot", "ts_ms"}`` and, when
    known, ``snapshot_seq`` (the first read seq of the snapshot the stream follows)."""
    value: dict[str, Any] = {"seq": seq, "snapshot": snapshot, "ts_ms": ts_ms}
    if snapshot_seq is not None:
        value["snapshot_seq"] = snapshot_seq
    return json.dumps(value, sort_keys=True).encode()
