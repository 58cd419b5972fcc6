"""Every value the writer can put in the store (issue 17, item 4): SQLite keeps a storage class per
value, whatever the column's declared type; the trigger's image and the converter carry each one
exactly into the change event, or the row is refused by name (and parked by the daemon)."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from replicator.capture.install import install
from replicator.events.avro import decode_any
from replicator.source.convert import Unfit, convert_change
from replicator.source.store import StoreReader
from replicator.testing.writer import MemoryWriter

_ENTITY = "INSERT INTO entities (name, entity_type, observations, created_at, updated_at) VALUES ('e', 't', '[]', 1, 1)"


def _event(tmp_path: Path, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any]:
    """The ``after`` image of the last change ``sql`` made, through triggers, reader and converter."""
    db = tmp_path / "memory.db"
    MemoryWriter.create(db).close()
    install(db)
    conn = sqlite3.connect(db)
    conn.execute(_ENTITY)
    conn.execute(sql, params)
    conn.commit()
    conn.close()
    reader = StoreReader(db)
    try:
        row = reader.changelog_after(0, 100)[-1]
    finally:
        reader.close()
    out = convert_change(row, prefix="p", store_id="s")
    assert out.messages[0].value is not None
    record: dict[str, Any] = decode_any(out.messages[0].value)[1]["after"]
    return record


@pytest.mark.parametrize(
    ("column", "stored", "carried"),
    [
        ("version", 2.7, 2.7),  # REAL in an INTEGER column: was truncated to 2
        ("confidence", None, None),  # NULL where the schema has a default: was turned into 1.0
        ("strength", None, None),
        ("version", None, None),
        ("version", "abc", "abc"),  # TEXT in an INTEGER column: the source raised at every restart
        ("confidence", "high", "high"),
        ("created_at", "yesterday", "yesterday"),
        ("version", float("inf"), float("inf")),
        ("valid_to", float("-inf"), float("-inf")),
        ("created_at", 2**63 - 1, 2**63 - 1),
        ("valid_from", -(2**63), -(2**63)),
        ("version", 2**53 + 1, 2**53 + 1),
        ("confidence", 1.4523142177899403e308, 1.4523142177899403e308),  # SQLite's printf misses its last digit
        ("confidence", -1.566228692651259e302, -1.566228692651259e302),
        ("confidence", 5e-324, 5e-324),
        ("metadata", b"\x00\xff{}", b"\x00\xff{}"),  # a BLOB in a TEXT column: was decoded leniently to text
        ("confidence", b"\x01", b"\x01"),
        ("name", b"\xfe", b"\xfe"),
        ("observations", "not json", "not json"),  # TEXT that is no JSON array: exactly, not ["not json"]
        ("observations", '["a", 3]', '["a", 3]'),  # was ["a", "3"], the same as '["a", "3"]'
        ("observations", '["a", "b"]', ["a", "b"]),
        ("observations", b"\x00", b"\x00"),
        ("observations", b"", b""),  # an empty BLOB, not the empty list
        ("name", "nul\x00inside", "nul\x00inside"),
    ],
)
def test_each_storage_class_of_each_column_is_carried_exactly(
    tmp_path: Path, column: str, stored: object, carried: object
) -> None:
    after = _event(tmp_path, f"UPDATE entities SET {column} = ?", (stored,))
    assert type(after[column]) is type(carried) and after[column] == carried


def test_nan_is_stored_by_sqlite_as_null_and_carried_as_null(tmp_path: Path) -> None:
    after = _event(tmp_path, "UPDATE entities SET confidence = ?, version = ?", (float("nan"), float("nan")))
    assert after["confidence"] is None and after["version"] is None


def test_a_non_blob_embedding_keeps_its_type(tmp_path: Path) -> None:
    after = _event(tmp_path, "INSERT INTO embeddings (entity_id, embedding, created_at) VALUES (1, 'text', 2.5)")
    assert after["vector"] == "text" and after["created_at"] == 2.5


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("UPDATE entities SET name = CAST(x'61ff62' AS TEXT)", "name holds TEXT that is not valid UTF-8"),
        ("UPDATE entities SET id = -1", "id is -1, the key heartbeats use"),
        (
            "INSERT INTO relations (from_entity_id, to_entity_id, relation_type, created_at, updated_at) "
            "VALUES ('abc', 1, 'r', 1, 1)",
            "from_entity_id holds TEXT 'abc', not an entity id",
        ),
    ],
)
def test_a_value_no_event_carries_is_refused_by_name(tmp_path: Path, sql: str, named: str) -> None:
    db = tmp_path / "memory.db"
    MemoryWriter.create(db).close()
    install(db)
    conn = sqlite3.connect(db)  # foreign keys off, as a writer may run
    conn.execute(_ENTITY)
    conn.execute(sql)
    conn.commit()
    conn.close()
    reader = StoreReader(db)
    row = reader.changelog_after(0, 100)[-1]
    reader.close()
    with pytest.raises(Unfit, match=named) as info:
        convert_change(row, prefix="p", store_id="s")
    assert f"id {row.row_id}" in info.value.message and f"seq {row.seq}" in info.value.message


ODD = {
    "name": b"\xfe", "entity_type": "t", "observations": '["a", 3]', "confidence": float("inf"),
    "strength": None, "version": "abc", "created_at": 2**63 - 1, "updated_at": 2.5, "valid_from": -(2**63),
    "valid_to": float("-inf"), "metadata": b"\x00",
}  # fmt: skip


def _odd_event() -> Any:
    from replicator.testing.events import Stream  # noqa: PLC0415 - the sinks' test helpers

    return Stream().entity("c", 5, {"id": 7, **ODD, "extra": None})


@pytest.mark.parametrize(
    "value", [None, 0, 2**63 - 1, -(2**63), 2.5, float("inf"), float("-inf"), "text", "", b"", b"\x00\xff", ["a"]]
)
def test_the_qdrant_payload_holds_each_value_in_json_and_reads_it_back(value: object) -> None:
    import json  # noqa: PLC0415

    from replicator.sinks.qdrant.points import payload_value, stored_value  # noqa: PLC0415

    encoded = payload_value(value)
    json.dumps(encoded, allow_nan=False)  # what a Qdrant server's JSON can carry (no inf, NaN or bytes)
    decoded = stored_value(json.loads(json.dumps(encoded)))
    assert type(decoded) is type(value) and decoded == value
    nan = stored_value(json.loads(json.dumps(payload_value(float("nan")), allow_nan=False)))
    assert isinstance(nan, float) and math.isnan(nan)


def test_both_sinks_plan_the_values_exactly() -> None:
    from replicator.embedding import MODEL_NAME  # noqa: PLC0415
    from replicator.sinks.batch import Batch  # noqa: PLC0415
    from replicator.sinks.neo4j.model import GraphModel  # noqa: PLC0415
    from replicator.sinks.neo4j.planner import plan as neo4j_plan  # noqa: PLC0415
    from replicator.sinks.qdrant.planner import plan as qdrant_plan  # noqa: PLC0415
    from replicator.sinks.qdrant.points import entity_values  # noqa: PLC0415

    event = _odd_event()
    props = neo4j_plan(Batch([event], {}), GraphModel()).entity_upserts[0]["props"]
    assert {k: props[k] for k in ODD} == ODD  # Neo4j holds every storage class natively
    [write] = qdrant_plan([event], {}, {}, MODEL_NAME, "v").writes
    values = entity_values(write.payload)
    assert all(type(values[k]) is type(v) and values[k] == v for k, v in ODD.items()), values
    assert write.text == "\\xfe t a 3", "the embedding text reads odd values leniently"


def test_the_snapshot_reads_rows_with_ids_down_to_minus_2_to_the_63(tmp_path: Path) -> None:
    """A rowid may be negative; the snapshot's cursor started at id > 0 and silently skipped them."""
    from replicator.source.snapshot import SnapshotCursor, read_chunk  # noqa: PLC0415

    db = tmp_path / "memory.db"
    writer = MemoryWriter.create(db)
    for entity_id in (-(2**63), -5, 0, 3, 2**63 - 1):
        writer.conn.execute(
            "INSERT INTO entities (id, name, entity_type, observations, created_at, updated_at) "
            "VALUES (?, ?, 't', '[]', 1, 1)",
            (entity_id, f"e{entity_id}"),
        )
    writer.close()
    install(db)
    reader = StoreReader(db)
    columns = reader.check().columns
    cursor = SnapshotCursor(first_seq=-1, read_seq=reader.begin_snapshot(), table_index=0, after_id=None)
    keys = [key for _, key, _ in read_chunk(reader, columns, cursor, 2, 10**6)]
    keys += [key for _, key, _ in read_chunk(reader, columns, cursor, 100, 10**6)]
    reader.end_snapshot()
    reader.close()
    assert keys == [-(2**63), -5, 0, 3, 2**63 - 1]
