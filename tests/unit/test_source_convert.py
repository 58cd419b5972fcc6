"""Pure conversion of changelog rows, snapshot rows and heartbeats into Kafka messages."""

from __future__ import annotations

import json
import sqlite3
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.capture.install import install
from replicator.capture.triggers import KNOWN_COLUMNS, changelog_rows
from replicator.events import headers
from replicator.events.avro import decode_any, decode_key
from replicator.source.convert import (
    ChangelogRow,
    convert_change,
    convert_snapshot_row,
    heartbeat_messages,
    parse_observations,
    position_value,
)
from replicator.source.store import StoreReader
from replicator.testing.writer import MemoryWriter

P = "t.caxton.memory"


def _row(table: str, op: str, before: dict[str, object] | None, after: dict[str, object] | None) -> ChangelogRow:
    return ChangelogRow(
        7,
        table,
        op,
        5,
        1000,
        None if before is None else json.dumps(before),
        None if after is None else json.dumps(after),
    )


ENTITY = {
    "id": 5, "name": "Ada", "entity_type": "person", "observations": '["wrote code", "math"]', "confidence": 0.5,
    "strength": 1.0, "version": 2, "created_at": 10, "updated_at": 20, "valid_from": None, "valid_to": 30,
    "metadata": '{"k": 1}',
}  # fmt: skip


def test_entity_update_becomes_an_envelope_with_decoded_observations() -> None:
    out = convert_change(_row("entities", "u", ENTITY, {**ENTITY, "name": "Ada L."}), prefix=P, store_id="s1")

    assert out.warnings == []
    [msg] = out.messages
    assert msg.topic == f"{P}.entities"
    assert decode_key(msg.key) == 5
    assert dict(msg.headers) == {"replicator.table": b"entities", "replicator.seq": b"7"}
    assert msg.value is not None
    name, rec = decode_any(msg.value)
    assert name == "caxton.memory.EntityChange"
    assert rec["op"] == "u"
    assert rec["before"]["name"] == "Ada" and rec["after"]["name"] == "Ada L."
    assert rec["after"]["observations"] == ["wrote code", "math"]
    assert rec["after"]["metadata"] == '{"k": 1}' and rec["after"]["valid_to"] == 30 and rec["after"]["extra"] is None
    assert rec["source"] | {"version": "-"} == {
        "connector": "caxton-sqlite", "version": "-", "store": "s1", "table": "entities", "seq": 7,
        "snapshot": "false", "ts_ms": 1000,
    }  # fmt: skip


def test_delete_is_followed_by_a_tombstone_with_the_same_key() -> None:
    out = convert_change(_row("entities", "d", ENTITY, None), prefix=P, store_id="s1")

    event, tombstone = out.messages
    assert tombstone.value is None and tombstone.key == event.key and tombstone.topic == event.topic
    assert event.value is not None
    assert decode_any(event.value)[1]["after"] is None


@pytest.mark.parametrize(
    ("text", "expected", "ok"),
    [
        ('["a", "b"]', ["a", "b"], True),
        ("[]", [], True),
        ("not json [", ["not json ["], False),
        ('{"a": 1}', ['{"a": 1}'], False),
        ('["a", 3, null]', ["a", "3", "null"], False),
        ('"just text"', ['"just text"'], False),
    ],
)
def test_observations_that_are_not_a_json_array_of_strings_are_carried_not_dropped(
    text: str, expected: list[str], ok: bool
) -> None:
    assert parse_observations(text) == (expected, ok)


def test_invalid_observations_are_carried_and_warned_about() -> None:
    out = convert_change(_row("entities", "c", None, {**ENTITY, "observations": "oops"}), prefix=P, store_id="s")

    assert out.messages[0].value is not None
    assert decode_any(out.messages[0].value)[1]["after"]["observations"] == "oops"  # exactly as stored
    assert len(out.warnings) == 1 and "changelog seq 7" in out.warnings[0]


def test_embedding_hex_becomes_bytes_and_text_comes_from_the_entity_fields() -> None:
    vector = struct.pack("<3f", 0.1, 0.2, 0.3)
    after = {
        "entity_id": 5, "embedding": vector.hex().upper(), "model_version": "all-MiniLM-L6-v2", "created_at": 9,
        "text_name": "Ada", "text_type": "person", "text_observations": '["wrote code", "math"]',
    }  # fmt: skip

    out = convert_change(_row("embeddings", "c", None, after), prefix=P, store_id="s")

    assert out.messages[0].value is not None
    rec = decode_any(out.messages[0].value)[1]["after"]
    assert rec["vector"] == vector
    assert rec["text"] == "Ada person wrote code math"
    gone = convert_change(_row("embeddings", "d", {**after, "text_name": None}, None), prefix=P, store_id="s")
    assert gone.messages[0].value is not None
    assert decode_any(gone.messages[0].value)[1]["before"]["text"] is None


def test_relation_carries_endpoint_names_and_unknown_columns_go_to_extra() -> None:
    after = {
        "id": 5, "from_entity_id": 1, "to_entity_id": 2, "relation_type": "depends on", "strength": 0.3,
        "confidence": 1.0, "created_at": 1, "updated_at": 2, "valid_from": None, "valid_to": None, "metadata": None,
        "from_entity_name": "a", "to_entity_name": None, "weight": ["real", 2.5],
    }  # fmt: skip

    out = convert_change(_row("relations", "c", None, after), prefix=P, store_id="s")

    assert out.messages[0].value is not None
    rec = decode_any(out.messages[0].value)[1]["after"]
    assert (rec["from_entity_name"], rec["to_entity_name"]) == ("a", None)
    assert rec["relation_type"] == "depends on"
    assert rec["extra"] == {"weight": '["real", 2.5]'}


def test_heartbeats_go_to_every_partition_of_every_topic() -> None:
    msgs = heartbeat_messages(
        prefix=P, store_id="s", seq=42, seen_ms=5, partitions={"entities": 3, "relations": 2, "embeddings": 3}
    )

    assert sorted((m.topic, m.partition) for m in msgs) == sorted(
        [(f"{P}.entities", p) for p in range(3)]
        + [(f"{P}.relations", p) for p in range(2)]
        + [(f"{P}.embeddings", p) for p in range(3)]
    )
    assert msgs[0].value is not None
    name, rec = decode_any(msgs[0].value)
    assert name == "caxton.memory.Heartbeat"
    assert (rec["source"]["seq"], rec["source"]["ts_ms"], decode_key(msgs[0].key)) == (42, 5, -1)
    assert dict(msgs[0].headers)["replicator.table"] == b"heartbeat"


def test_position_value_is_the_documented_json() -> None:
    assert json.loads(position_value(9, None, 1)) == {"seq": 9, "snapshot": None, "ts_ms": 1}


@settings(max_examples=25, deadline=None)
@given(
    name=st.text(min_size=1, max_size=20),
    observations=st.lists(st.text(max_size=15), max_size=4),
    confidence=st.floats(min_value=0, max_value=1),
)
def test_snapshot_image_and_trigger_image_convert_to_the_same_row(
    tmp_path_factory: pytest.TempPathFactory, name: str, observations: list[str], confidence: float
) -> None:
    db = tmp_path_factory.mktemp("s") / "m.db"
    writer = MemoryWriter.create(db)
    install(db)
    entity_id = writer.create_entity(name, "t", observations, confidence=confidence, embedding=[0.25, -1.5])
    writer.close()
    reader = StoreReader(Path(db))
    identity = reader.check()
    changelog = reader.changelog_after(0, 10)
    for table in ("entities", "embeddings"):
        [(key, image)] = reader.snapshot_chunk(table, identity.columns[table], 0, 10)
        assert key == entity_id
        snap = convert_snapshot_row(table, image, prefix=P, store_id="s", read_seq=2, last=False)
        [row] = [r for r in changelog if r.table == table]
        stream = convert_change(row, prefix=P, store_id="s")
        assert snap.messages[0].value is not None and stream.messages[0].value is not None
        from_snapshot = decode_any(snap.messages[0].value)[1]["after"]
        from_trigger = decode_any(stream.messages[0].value)[1]["after"]
        if table == "entities":
            assert from_snapshot["confidence"] == confidence
        assert from_snapshot == from_trigger
    reader.close()


def test_snapshot_image_carries_a_column_the_writer_added_as_typed_extra(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    writer = MemoryWriter.create(db)
    writer.conn.execute("ALTER TABLE entities ADD COLUMN rank INTEGER")
    writer.conn.execute(
        "INSERT INTO entities (name, entity_type, observations, created_at, updated_at, rank)"
        " VALUES ('a', 't', '[]', 1, 1, 7)"
    )
    install(db)
    reader = StoreReader(db)
    identity = reader.check()
    [(_, image)] = reader.snapshot_chunk("entities", identity.columns["entities"], 0, 10)
    out = convert_snapshot_row("entities", image, prefix=P, store_id="s", read_seq=0, last=True)
    assert out.messages[0].value is not None
    rec = decode_any(out.messages[0].value)[1]
    assert rec["after"]["extra"] == {"rank": '["integer", 7]'}
    assert rec["source"]["snapshot"] == "last"
    assert "rank" not in KNOWN_COLUMNS["entities"]
    assert changelog_rows(sqlite3.connect(db)) == 0
    reader.close()


def test_heartbeats_name_the_snapshot_their_stream_follows_and_the_position_keeps_it() -> None:
    plain = heartbeat_messages(prefix="p", store_id="s", seq=9, seen_ms=1, partitions={"entities": 2})
    named = heartbeat_messages(prefix="p", store_id="s", seq=9, seen_ms=1, partitions={"entities": 2}, snapshot_seq=4)
    assert [headers.parse(m.headers).snapshot_seq for m in plain] == [None, None]
    assert [headers.parse(m.headers) for m in named] == [headers.Parsed("heartbeat", 9, 4)] * 2
    assert json.loads(position_value(9, None, 1, 4)) == {"seq": 9, "snapshot": None, "ts_ms": 1, "snapshot_seq": 4}
    assert "snapshot_seq" not in json.loads(position_value(9, None, 1))


def test_a_tombstone_carries_the_seq_of_its_delete() -> None:
    row = ChangelogRow(12, "entities", "d", 3, 1, json.dumps({"id": 3, "name": "n", "entity_type": "t",
                       "observations": "[]", "created_at": 1, "updated_at": 1}), None)  # fmt: skip
    event, tombstone = convert_change(row, prefix="p", store_id="s").messages
    assert tombstone.value is None and tombstone.key == event.key
    assert headers.parse(tombstone.headers) == headers.Parsed("entities", 12, None)
