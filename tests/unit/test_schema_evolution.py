"""Avro schema evolution rules of docs/events.md, checked with fastavro's schema resolution.

For each allowed change: an old writer's bytes read with the new schema (a new consumer reading the
backlog) and a new writer's bytes read with the old schema (an old consumer during a rolling
upgrade). Each breaking change is shown to fail resolution. Then the project's own schemas: every
retired version in schemas/history/ resolves both ways against the current one.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from replicator.events.avro import VALUE_SCHEMAS, codec, history
from replicator.stack.smoke import entity_change

Schema = dict[str, Any]


def record(*fields: dict[str, Any], name: str = "T") -> Schema:
    return {"type": "record", "name": name, "namespace": "evolution", "fields": list(fields)}


def resolve(writer: Schema, reader: Schema, datum: dict[str, Any]) -> Any:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(writer), datum)
    out.seek(0)
    return schemaless_reader(out, parse_schema(writer), parse_schema(reader))


_ID = {"name": "id", "type": "long"}
_COLOR = {"type": "enum", "name": "Color", "symbols": ["red", "green"], "default": "red"}
_COLOR_MORE = {**_COLOR, "symbols": ["red", "green", "blue"]}

# (rule, old schema, new schema, a datum of the old schema, a datum of the new schema,
#  what the new reader sees of the old datum, what the old reader sees of the new datum)
ALLOWED = [
    (
        "add a field with a default",
        record(_ID),
        record(_ID, {"name": "note", "type": ["null", "string"], "default": None}),
        {"id": 1},
        {"id": 1, "note": "x"},
        {"id": 1, "note": None},
        {"id": 1},
    ),
    (
        "remove a field that had a default",
        record(_ID, {"name": "weight", "type": "double", "default": 1.0}),
        record(_ID),
        {"id": 1, "weight": 0.5},
        {"id": 1},
        {"id": 1},
        {"id": 1, "weight": 1.0},
    ),
    (
        "add an enum symbol at the end, the enum having a default",
        record(_ID, {"name": "color", "type": _COLOR}),
        record(_ID, {"name": "color", "type": _COLOR_MORE}),
        {"id": 1, "color": "green"},
        {"id": 1, "color": "blue"},
        {"id": 1, "color": "green"},
        {"id": 1, "color": "red"},  # the old reader falls back to the enum's default
    ),
    (
        "add a field whose type is a new record, with a null default",
        record(_ID),
        record(_ID, {"name": "sub", "type": ["null", record(_ID, name="Sub")], "default": None}),
        {"id": 1},
        {"id": 1, "sub": {"id": 2}},
        {"id": 1, "sub": None},
        {"id": 1},
    ),
]

# Promotions: new readers read old data. Only string <-> bytes and T -> union[T] also go back;
# int -> long and friends do not (an old reader cannot narrow), so widen only once every consumer
# runs the new schema.
WIDENING = [
    ("int -> long", "int", "long", 7, 7, False),
    ("float -> double", "float", "double", 0.5, 0.5, False),
    ("long -> double", "long", "double", 3, 3.0, False),
    ("string -> bytes", "string", "bytes", "ab", b"ab", True),
    ("non-union -> union with it", "long", ["null", "long"], 5, 5, True),
]

BREAKING = [
    ("add a field without a default", record(_ID), record(_ID, {"name": "n", "type": "long"}), {"id": 1}),
    (
        "rename a field without an alias",
        record({"name": "id", "type": "long"}),
        record({"name": "key", "type": "long"}),
        {"id": 1},
    ),
    ("narrow long -> int", record({"name": "id", "type": "long"}), record({"name": "id", "type": "int"}), {"id": 1}),
    (
        "remove an enum symbol, no default",
        record({"name": "c", "type": {"type": "enum", "name": "C", "symbols": ["a", "b"]}}),
        record({"name": "c", "type": {"type": "enum", "name": "C", "symbols": ["a"]}}),
        {"c": "b"},
    ),
    ("rename the record", record(_ID), record(_ID, name="Other"), {"id": 1}),
    ("change a type incompatibly", record(_ID), record({"name": "id", "type": "string"}), {"id": 1}),
]


@pytest.mark.parametrize("case", ALLOWED, ids=[c[0] for c in ALLOWED])
def test_allowed_change_resolves_both_ways(case: tuple[Any, ...]) -> None:
    rule, old, new, old_datum, new_datum, new_sees, old_sees = case
    assert resolve(old, new, old_datum) == new_sees, f"{rule}: new reader, old writer"
    assert resolve(new, old, new_datum) == old_sees, f"{rule}: old reader, new writer"


@pytest.mark.parametrize("case", WIDENING, ids=[c[0] for c in WIDENING])
def test_promotion_lets_new_readers_read_old_data(case: tuple[Any, ...]) -> None:
    rule, narrow, wide, value, read, reversible = case
    old, new = record({"name": "v", "type": narrow}), record({"name": "v", "type": wide})
    assert resolve(old, new, {"v": value}) == {"v": read}, rule
    if reversible:
        assert resolve(new, old, {"v": read}) == {"v": value}, rule
    else:
        with pytest.raises(SchemaResolutionError):
            resolve(new, old, {"v": read})


@pytest.mark.parametrize(("rule", "old", "new", "datum"), BREAKING)
def test_breaking_change_is_detected(rule: str, old: Schema, new: Schema, datum: dict[str, Any]) -> None:
    with pytest.raises(SchemaResolutionError):
        resolve(old, new, datum)


_SOURCE = {"connector": "c", "version": "0", "store": "s", "table": "t", "seq": 1, "snapshot": "false", "ts_ms": 1}
_AFTER = {
    "EntityChange": entity_change(1, "a", "t", ["o"], 5)["after"],
    "RelationChange": {"id": 1, "from_entity_id": 1, "to_entity_id": 2, "relation_type": "r", "strength": 1.0,
                       "confidence": 1.0, "created_at": 1, "updated_at": 1, "valid_from": None, "valid_to": None,
                       "metadata": None},
    "EmbeddingChange": {"entity_id": 1, "vector": b"\x00" * 8, "model_version": "m", "created_at": 1, "text": "t"},
}  # fmt: skip


def _roundtrip(writer: Any, reader: Any, datum: dict[str, Any]) -> dict[str, Any]:
    out = io.BytesIO()
    schemaless_writer(out, writer, datum)
    out.seek(0)
    decoded: dict[str, Any] = schemaless_reader(out, writer, reader)  # type: ignore[assignment]
    return decoded


def test_every_retired_schema_resolves_both_ways_against_the_current_one() -> None:
    retired = list(history().values())
    assert retired, "schemas/history/ is empty"
    for old in retired:
        assert old.name in VALUE_SCHEMAS
        current = codec(old.name)
        sample = {"op": "c", "before": None, "after": _AFTER[old.name.rsplit(".", 1)[1]], "source": _SOURCE, "ts_ms": 1}
        for writer, reader in ((old.schema, current.schema), (current.schema, old.schema)):
            decoded = _roundtrip(writer, reader, sample)["after"]
            assert decoded["id" if "id" in decoded else "entity_id"] == 1


def test_an_old_consumer_refuses_only_the_values_its_schema_cannot_hold() -> None:
    """The fields became unions (docs/events.md, "Values"): an old reader still reads every event whose
    values its types hold, and refuses (dead-letters) one holding NULL, TEXT or a REAL in a number. A BLOB
    in a TEXT column reaches it as text (Avro promotes bytes to string)."""
    old = next(c for c in history().values() if c.fingerprint.hex() == "085042ca2e73165a")
    current = codec(old.name)
    after = dict(_AFTER["EntityChange"])
    sample = {"op": "c", "before": None, "after": after, "source": _SOURCE, "ts_ms": 1}
    assert _roundtrip(current.schema, old.schema, sample)["after"]["confidence"] == after["confidence"]
    for column, odd in (("confidence", None), ("version", 2.7), ("created_at", "yesterday"), ("strength", b"\x00")):
        with pytest.raises(SchemaResolutionError):
            _roundtrip(current.schema, old.schema, {**sample, "after": {**after, column: odd}})
        assert (
            _roundtrip(current.schema, current.schema, {**sample, "after": {**after, column: odd}})["after"][column]
            == odd
        )
