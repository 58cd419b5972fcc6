"""The triggers' changelog rows: images, ops, cascades, and that no value can fail a writer's statement."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.capture.image import value_of
from replicator.capture.install import install
from replicator.capture.triggers import CHANGELOG, MARK, json_value_sql
from replicator.source.store import StoreReader
from replicator.store.schema import ENTITY_COLUMNS, pack_vector
from replicator.testing.writer import MemoryWriter


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[MemoryWriter]:
    path = tmp_path / "memory.db"
    MemoryWriter.create(path).close()
    install(path)
    w = MemoryWriter(path)
    yield w
    w.close()


def changelog(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    columns = "seq, tbl, op, row_id, ts_ms, before, after"
    rows = conn.execute(f"SELECT {columns} FROM {CHANGELOG} WHERE op <> '{MARK}' ORDER BY seq")  # changes, no mark
    return [
        {
            "seq": seq, "tbl": tbl, "op": op, "row_id": row_id, "ts_ms": ts_ms,
            "before": None if before is None else json.loads(before),
            "after": None if after is None else json.loads(after),
        }
        for seq, tbl, op, row_id, ts_ms, before, after in rows
    ]  # fmt: skip


def state(writer: MemoryWriter) -> list[dict[str, Any]]:
    """The images (``image_sql``: the snapshot's and parking's rendering) of the rows the source
    publishes for the changelog as it is now; the page itself reads them by columns (the values are
    checked through the converter in test_value_classes.py)."""
    reader = StoreReader(Path(str(writer.conn.execute("PRAGMA database_list").fetchone()[2])))
    try:
        rows = reader.changelog_after(0, 1000)
        return [json.loads(reader.image_of(r.table, r.row_id) or "{}") if r.after else {} for r in rows]
    finally:
        reader.close()


def test_insert_update_delete_of_an_entity_record_its_key_only(writer: MemoryWriter) -> None:
    eid = writer.create_entity("alice", "person", ["likes tea", 'says "hi"\n'], metadata={"k": [1, 2]})
    created = state(writer)[0]
    writer.rename(eid, "alicia")
    writer.delete_entity(eid)

    rows = changelog(writer.conn)
    assert [(r["tbl"], r["op"], r["row_id"]) for r in rows] == [("entities", op, eid) for op in "cud"]
    assert [r["seq"] for r in rows] == sorted({r["seq"] for r in rows})
    assert all(r["before"] is None and r["after"] is None for r in rows)  # the writer pays for the key only
    assert created["name"] == "alice"
    assert json.loads(created["observations"]) == ["likes tea", 'says "hi"\n']  # the writer's JSON text
    assert json.loads(created["metadata"]) == {"k": [1, 2]}
    assert created["confidence"] == 1.0 and created["version"] == 1
    assert all(abs(r["ts_ms"] - created["created_at"]) < 60_000 for r in rows)


def test_update_that_changes_nothing_is_not_recorded(writer: MemoryWriter) -> None:
    eid = writer.create_entity("a", "t")
    writer.conn.execute("UPDATE entities SET name = name WHERE id = ?", (eid,))

    assert [r["op"] for r in changelog(writer.conn)] == ["c"]


@pytest.mark.parametrize("column", [c for c in ENTITY_COLUMNS if c != "id"])
def test_an_update_of_any_one_column_is_recorded(writer: MemoryWriter, column: str) -> None:
    """The "changed nothing" WHEN compares updated_at and version first: a change elsewhere, with
    those two as they were, is still seen."""
    eid = writer.create_entity("a", "t", ["x"])
    values = {"name": "b", "entity_type": "u", "observations": "[]", "confidence": 0.5, "strength": 0.5}
    values |= {"version": 7, "created_at": 1, "updated_at": 2, "valid_from": 3, "valid_to": 4, "metadata": "{}"}
    value = values[column]
    writer.conn.execute(f"UPDATE entities SET {column} = ? WHERE id = ?", (value, eid))

    assert [r["op"] for r in changelog(writer.conn)] == ["c", "u"]


def test_relation_images_carry_endpoint_names_and_cascaded_deletes_are_captured(writer: MemoryWriter) -> None:
    a = writer.create_entity("a", "t", embedding=[0.5] * 4)
    b = writer.create_entity("b", "t")
    rid = writer.create_relation(a, b, "depends on")
    published = state(writer)
    writer.delete_entity(a)

    rows = changelog(writer.conn)
    created = next(i for i in published if i.get("relation_type") == "depends on")
    assert (created["from_entity_name"], created["to_entity_name"]) == ("a", "b")  # read while publishing
    deletes = [(r["tbl"], r["row_id"]) for r in rows if r["op"] == "d"]
    assert sorted(deletes) == sorted([("embeddings", a), ("relations", rid), ("entities", a)])
    # A relation's delete keeps its old image (the graph sink finds the relationship by its endpoints).
    before = next(r for r in rows if r["tbl"] == "relations" and r["op"] == "d")["before"]
    assert (before["id"], before["from_entity_id"], before["to_entity_id"]) == (rid, a, b)
    assert "from_entity_name" not in before  # a trigger never reads other rows
    embedding = next(i for i in published if "embedding" in i)
    assert bytes.fromhex(embedding["embedding"]) == pack_vector([0.5] * 4)
    assert (embedding["text_name"], embedding["text_type"]) == ("a", "t")


def test_a_relation_update_keeps_the_old_image_only_when_its_endpoints_move(writer: MemoryWriter) -> None:
    a, b, c = (writer.create_entity(n, "t") for n in "abc")
    rid = writer.create_relation(a, b, "r")
    writer.set_relation_strength(rid, 0.5)
    writer.conn.execute("UPDATE relations SET to_entity_id = ? WHERE id = ?", (c, rid))

    updates = [r for r in changelog(writer.conn) if r["tbl"] == "relations" and r["op"] == "u"]
    assert updates[0]["before"] is None
    assert (updates[1]["before"]["to_entity_id"], updates[1]["before"]["strength"]) == (b, 0.5)


def test_blob_in_a_text_column_never_fails_the_writer(writer: MemoryWriter) -> None:
    writer.conn.execute(
        "INSERT INTO entities (name, entity_type, observations, created_at, updated_at, metadata, confidence)"
        " VALUES (?, ?, ?, 1, 1, ?, ?)",
        (b"\x00bin", "t", b"\xff", b"{}", b"\x01"),
    )
    after = state(writer)[0]
    writer.conn.execute("UPDATE entities SET metadata = x'00'")
    writer.conn.execute("DELETE FROM entities")

    assert after["name"] == ["blob", "0062696E"]
    assert after["confidence"] == ["blob", "01"]
    assert [r["op"] for r in changelog(writer.conn)] == ["c", "u", "d"]


def test_relation_endpoint_name_stored_as_blob_is_carried(writer: MemoryWriter) -> None:
    writer.conn.execute(
        "INSERT INTO entities (name, entity_type, observations, created_at, updated_at) VALUES (x'41', 't', '[]', 1, 1)"
    )
    writer.conn.execute(
        "INSERT INTO entities (name, entity_type, observations, created_at, updated_at) VALUES ('b', 't', '[]', 1, 1)"
    )
    writer.conn.execute(
        "INSERT INTO relations (from_entity_id, to_entity_id, relation_type, created_at, updated_at)"
        " VALUES (1, 2, 'r', 1, 1)"
    )

    after = state(writer)[-1]
    assert after["from_entity_name"] == ["blob", "41"] and after["to_entity_name"] == "b"


def test_writer_with_trusted_schema_off_is_not_broken(writer: MemoryWriter) -> None:
    # SQLite < 3.45 calls its JSON functions unsafe in triggers under trusted_schema=OFF.
    writer.conn.execute("PRAGMA trusted_schema=OFF")
    eid = writer.create_entity("a", "t", ["x"], embedding=[1.0])
    writer.create_relation(eid, eid, "self")
    writer.delete_entity(eid)

    assert len(changelog(writer.conn)) == 6


_TEXT_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")  # SQLite text: no NUL
_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    # Every double: printf('%!.17g') is exact below 1e100, beyond it the image scales by 2**768.
    st.floats(allow_nan=False),
    st.floats(min_value=1e100, allow_infinity=False),
    st.floats(max_value=-1e100, allow_infinity=False),
    st.sampled_from([float("inf"), float("-inf")]),
    st.text(alphabet=_TEXT_CHARS, max_size=30),
    st.binary(max_size=10),
)


@settings(max_examples=150, deadline=None)
@given(value=_values)
def test_json_value_sql_renders_every_storage_class_as_valid_json(value: object) -> None:
    conn = sqlite3.connect(":memory:")
    text = conn.execute(f"SELECT {json_value_sql('?1')}", (value,)).fetchone()[0]
    decoded = json.loads(text)
    if isinstance(value, bytes):
        assert decoded == ["blob", value.hex().upper()]
    exact = value_of(decoded)
    assert type(exact) is type(value) and exact == value


@settings(max_examples=40, deadline=None)
@given(name=st.text(alphabet=_TEXT_CHARS, min_size=1))
def test_any_entity_name_gives_a_parseable_image(tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    path = tmp_path_factory.mktemp("n") / "memory.db"
    MemoryWriter.create(path).close()
    install(path)
    w = MemoryWriter(path)
    try:
        w.create_entity(name, "t", [name])
        after = state(w)[0]
        assert after["name"] == name and json.loads(after["observations"]) == [name]
    finally:
        w.close()
