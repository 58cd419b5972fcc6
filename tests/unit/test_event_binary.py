"""The source's one-pass event writer (events/binary.py, source/state_events.py) against the general
path (convert.row_record + fastavro): the same bytes for every table and op, and the general path's
verdict (warned, parked) wherever a value is odd."""

from __future__ import annotations

import io
import json
import sqlite3
import struct
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.capture.install import install
from replicator.errors import Poison, SchemaError
from replicator.events.avro import KEY, codec, decode_any, encode_key
from replicator.events.binary import long_bytes
from replicator.source import convert
from replicator.source.convert import ChangelogRow, Conversion, convert_change, convert_snapshot_row
from replicator.source.state_events import encode_state
from replicator.source.store import StoreReader
from replicator.testing.writer import MemoryWriter

P = "t.caxton.memory"
STORE = "0f3c9a7e5b2d4c1f8e6a0b9d7c5e3a1f"
VECTOR = struct.pack("<384f", *[0.01 * i for i in range(384)])

ENTITY = {
    "id": 5, "name": "Ada", "entity_type": "person", "observations": '["wrote code", "math"]', "confidence": 0.5,
    "strength": 1.0, "version": 2, "created_at": 1796035602056, "updated_at": 1796035602057, "valid_from": None,
    "valid_to": 30, "metadata": '{"k": 1}',
}  # fmt: skip
RELATION = {
    "id": 9, "from_entity_id": 5, "to_entity_id": 6, "relation_type": "knows", "strength": 0.25, "confidence": None,
    "created_at": 1, "updated_at": 2, "valid_from": 3, "valid_to": None, "metadata": None,
    "from_entity_name": "Ada", "to_entity_name": None,
}  # fmt: skip
EMBEDDING = {
    "entity_id": 5, "embedding": VECTOR, "model_version": "all-MiniLM-L6-v2", "created_at": 1796035602056,
    "text_name": "Ada", "text_type": "person", "text_observations": '["wrote code", "math"]',
}  # fmt: skip
STATES = {"entities": ENTITY, "relations": RELATION, "embeddings": EMBEDDING}


def _row(table: str, op: str, state: dict[str, Any], seq: int = 7) -> ChangelogRow:
    return ChangelogRow(seq, table, op, 5, 1000, None, state)


def _general(row: ChangelogRow) -> Conversion | str:
    """The general path alone (the one-pass writer switched off): its conversion, or why it refuses."""
    with mock.patch.object(convert, "encode_state", return_value=None):
        try:
            return convert_change(row, prefix=P, store_id=STORE, produced_ms=1796035602099)
        except (Poison, SchemaError, ValueError, TypeError) as exc:
            return f"{type(exc).__name__}: {exc}"


def _both(row: ChangelogRow) -> tuple[Conversion | str, Conversion | str]:
    try:
        fast: Conversion | str = convert_change(row, prefix=P, store_id=STORE, produced_ms=1796035602099)
    except (Poison, SchemaError, ValueError, TypeError) as exc:
        fast = f"{type(exc).__name__}: {exc}"
    return fast, _general(row)


@pytest.mark.parametrize("table", sorted(STATES))
@pytest.mark.parametrize("op", ["c", "u"])
def test_a_typical_row_takes_the_one_pass_writer_and_gives_the_general_paths_bytes(table: str, op: str) -> None:
    row = _row(table, op, STATES[table])
    value = encode_state(table, op, STATES[table], store_id=STORE, seq=7, ts_ms=1000, produced_ms=1796035602099)
    assert value is not None, "a typical row must not fall back to the general path"
    fast, general = _both(row)
    assert isinstance(fast, Conversion) and isinstance(general, Conversion)
    assert fast.messages == general.messages and fast.warnings == general.warnings == []
    assert fast.messages[0].value == value
    name, record = decode_any(value)
    assert name.endswith("Change")
    assert record["op"] == op and record["before"] is None and record["source"]["seq"] == 7
    assert record["after"]["extra"] is None


_sqlite_value = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([-1, 0, 1, 2**53 + 1]),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["caf\u00e9", "\udcff bad utf-8", "\u65e5\u672c"]),
    st.binary(max_size=8),
)
_observations = st.one_of(
    st.lists(st.text(max_size=6), max_size=3).map(json.dumps),
    st.sampled_from(['["a", 1]', "not json", '{"a": 1}', "[]", '["\\ud800"]', '["\udcff"]', "7"]),
    _sqlite_value,
)


@settings(max_examples=300, deadline=None)
@given(table=st.sampled_from(sorted(STATES)), op=st.sampled_from(["c", "u"]), data=st.data())
def test_any_sqlite_values_give_the_general_paths_bytes_or_its_verdict(
    table: str, op: str, data: st.DataObject
) -> None:
    state = dict(STATES[table])
    for column in data.draw(st.sets(st.sampled_from(sorted(state)), max_size=4)):
        state[column] = data.draw(_observations if "observations" in column else _sqlite_value)
    fast, general = _both(_row(table, op, state))
    assert fast == general


def test_a_non_blob_vector_and_the_heartbeat_key_go_the_general_way() -> None:
    odd = {**EMBEDDING, "embedding": ["text", "abc"]}
    assert encode_state("embeddings", "u", odd, store_id=STORE, seq=1, ts_ms=1, produced_ms=1) is None
    assert _both(_row("embeddings", "u", odd)) == (_general(_row("embeddings", "u", odd)),) * 2
    heartbeat_key = {**ENTITY, "id": -1}
    assert encode_state("entities", "c", heartbeat_key, store_id=STORE, seq=1, ts_ms=1, produced_ms=1) is None
    fast, general = _both(_row("entities", "c", heartbeat_key))
    assert fast == general and isinstance(fast, str) and "heartbeats" in fast


@given(st.integers(-(2**63), 2**63 - 1))
def test_keys_and_longs_are_fastavros_bytes(n: int) -> None:
    assert encode_key(n) == codec(KEY).encode({"id": n})
    out = io.BytesIO()
    schemaless_writer(out, "long", n)
    assert long_bytes(n) == out.getvalue()


#: Entities holding every odd value the store may hold (test_value_classes.py), one per row, then the
#: relations and embeddings around them; the snapshot reads each by columns and as an image.
_ODD_ENTITIES = [
    ("version", 2.7), ("confidence", None), ("version", "abc"), ("created_at", "yesterday"), ("version", float("inf")),
    ("valid_to", float("-inf")), ("created_at", 2**63 - 1), ("valid_from", -(2**63)), ("version", 2**53 + 1),
    ("confidence", 1.4523142177899403e308), ("confidence", 5e-324), ("metadata", b"\x00\xff{}"), ("name", b"\xfe"),
    ("observations", "not json"), ("observations", '["a", 3]'), ("observations", b""), ("name", "nul\x00inside"),
    ("name", "caf\u00e9 \u65e5\u672c"), ("id", -1), ("id", -(2**63)),
]  # fmt: skip


def _odd_store(db: Path) -> None:
    writer = MemoryWriter.create(db)
    for i in range(len(_ODD_ENTITIES)):
        writer.create_entity(f"e{i}", "t", [f"o{i}"], embedding=[0.5] * 384)
    writer.close()
    conn = sqlite3.connect(db)  # foreign keys off, as a writer may run
    for i, (column, value) in enumerate(_ODD_ENTITIES, start=1):
        conn.execute(f"UPDATE entities SET {column} = ? WHERE name = ?", (value, f"e{i - 1}"))
    conn.execute("UPDATE entities SET name = CAST(x'61ff62' AS TEXT) WHERE name = 'e1'")
    conn.execute("UPDATE embeddings SET embedding = 'text', created_at = 2.5 WHERE entity_id = 3")
    conn.execute("INSERT INTO embeddings (entity_id, embedding, created_at) VALUES (999, x'00', 1)")  # no entity
    relation = "INSERT INTO relations (from_entity_id, to_entity_id, relation_type, strength, created_at, updated_at)"
    conn.execute(f"{relation} VALUES (2, 4, 'knows', 0.5, 1, 2)")
    conn.execute(f"{relation} VALUES (13, 999, x'01', NULL, 'x', 2)")  # a BLOB-named endpoint, a missing one
    conn.execute(f"{relation} VALUES ('abc', 1, 'r', 1, 1, 1)")
    conn.commit()
    conn.close()


def _outcome(table: str, read: str | dict[str, Any]) -> Conversion | str:
    try:
        return convert_snapshot_row(table, read, prefix=P, store_id=STORE, read_seq=9, last=False, produced_ms=5)
    except (Poison, SchemaError, ValueError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"


def test_a_snapshot_read_by_columns_publishes_what_its_images_publish(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    _odd_store(db)
    install(db)
    reader = StoreReader(db)
    columns = reader.check().columns
    reader.begin_snapshot()
    fast = total = 0
    for table in ("entities", "relations", "embeddings"):
        images = reader.snapshot_chunk(table, columns[table], None, 100)
        states = reader.snapshot_states(table, columns[table], None, 100)
        assert [key for key, _ in states] == [key for key, _ in images] and len(images) > 2
        for (key, image), (_, state) in zip(images, states, strict=True):
            assert isinstance(state, dict)
            assert _outcome(table, state) == _outcome(table, image), (table, key)
            total += 1
            fast += encode_state(table, "r", state, store_id=STORE, seq=9, ts_ms=5, produced_ms=5) is not None
    reader.end_snapshot()
    reader.close()
    assert fast >= total * 3 // 4  # most rows took the one-pass writer; the odd ones the general path
