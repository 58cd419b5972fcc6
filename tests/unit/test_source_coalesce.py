"""Capture v5: the triggers record keys, the source reads each row's state while publishing and
coalesces a row's changes in a page (docs/capture.md, "What a changelog row holds"). Pure grouping,
then the reader on a real store, then the daemon whole on the in-memory broker: per-key order,
every change covered exactly once, deletes and cascades, and a store upgraded from v4 with a
non-empty changelog of whole images drained in order."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from replicator.capture.install import install, read_state
from replicator.capture.triggers import (
    CAPTURE_VERSION,
    CHANGELOG,
    KEY_COLUMN,
    META,
    changelog_rows,
    image_sql,
    trigger_names,
)
from replicator.events.avro import HEARTBEAT, decode_any, decode_key
from replicator.events.headers import parse
from replicator.source.coalesce import Unit, is_gone, units
from replicator.source.convert import ChangelogRow
from replicator.source.store import StoreReader
from replicator.store.schema import TABLES
from replicator.testing.writer import MemoryWriter
from replicator.transport.topics import change_topic
from tests.unit.test_source_daemon import PREFIX, Rig


def row(seq: int, op: str, row_id: int = 1, *, table: str = "entities", before: str | None = None,
        after: str | None = None) -> ChangelogRow:  # fmt: skip
    return ChangelogRow(seq, table, op, row_id, seq * 10, before, after)


def test_a_run_of_changes_of_one_row_is_one_unit_at_its_highest_seq() -> None:
    got = units([row(2, "c"), row(3, "u", 2), row(4, "u"), row(5, "u")])
    assert [(u.row.seq, u.row.op, u.covers, u.needs_state) for u in got] == [
        (3, "u", (), True),
        (5, "c", (2, 4), True),  # began with the insert: published as c
    ]
    assert got[1].row.ts_ms == 50


def test_a_delete_ends_a_run_and_is_published_as_the_delete() -> None:
    got = units([row(2, "u"), row(3, "d"), row(4, "c"), row(5, "u")])  # deleted, then inserted again
    assert [(u.row.seq, u.row.op, u.covers, u.needs_state) for u in got] == [
        (3, "d", (2,), False),
        (5, "c", (4,), True),
    ]


def test_a_relation_update_that_moves_its_endpoints_is_its_own_event() -> None:
    moved = '{"id":1,"from_entity_id":1,"to_entity_id":2}'
    got = units([row(2, "u", table="relations"), row(3, "u", table="relations", before=moved),
                 row(4, "u", table="relations")])  # fmt: skip
    assert [(u.row.seq, u.row.before, u.covers) for u in got] == [(3, moved, (2,)), (4, None, ())]


def test_rows_with_whole_images_are_published_as_they_are() -> None:
    old = [row(2, "c", after="{}"), row(3, "u", before="{}", after="{}"), row(4, "u")]
    got = units(old)
    assert [u.row for u in got[:2]] == old[:2] and got[2] == Unit(old[2], (), True)
    assert is_gone(row(5, "u")) and not is_gone(row(5, "d")) and not is_gone(old[0])


def _store(tmp_path: Path) -> tuple[Path, MemoryWriter]:
    path = tmp_path / "memory.db"
    MemoryWriter.create(path).close()
    install(path)
    return path, MemoryWriter(path)


def _page(path: Path, limit: int = 1000) -> list[ChangelogRow]:
    reader = StoreReader(path)
    try:
        return reader.changelog_after(0, limit)
    finally:
        reader.close()


def test_the_page_reads_the_state_once_per_row_as_of_its_read(tmp_path: Path) -> None:
    path, w = _store(tmp_path)
    a = w.create_entity("a", "t", ["one"])
    w.add_observations(a, ["two"])
    w.rename(a, "a2")
    got = _page(path)
    assert len(got) == 1 and (got[0].seq, got[0].op, got[0].before) == (4, "c", None)
    assert isinstance(got[0].after, dict) and got[0].after["name"] == "a2"  # read by columns


def test_a_row_deleted_after_the_page_publishes_nothing_and_its_delete_follows(tmp_path: Path) -> None:
    path, w = _store(tmp_path)
    a = w.create_entity("a", "t")
    b = w.create_entity("b", "t")
    w.delete_entity(a)
    first = _page(path, limit=2)  # a's create and b's create; a's delete is beyond the page
    assert [(r.row_id, r.op, is_gone(r)) for r in first] == [(a, "c", True), (b, "c", False)]
    assert [(r.row_id, r.op) for r in _page(path)] == [(b, "c"), (a, "d")]


def test_a_cascade_publishes_each_delete_and_a_relation_delete_names_its_endpoints(tmp_path: Path) -> None:
    path, w = _store(tmp_path)
    a = w.create_entity("a", "t", embedding=[0.5] * 4)
    b = w.create_entity("b", "t")
    rid = w.create_relation(a, b, "knows")
    conn = sqlite3.connect(path)
    conn.execute(f"DELETE FROM {CHANGELOG}")  # published
    conn.commit()
    conn.close()
    w.delete_entity(a)
    got = {(r.table, r.op, r.row_id): r for r in _page(path)}
    assert sorted(got) == sorted([("embeddings", "d", a), ("relations", "d", rid), ("entities", "d", a)])
    before = json.loads(str(got[("relations", "d", rid)].before))
    assert (before["from_entity_id"], before["to_entity_id"]) == (a, b)
    assert got[("entities", "d", a)].before is None and got[("embeddings", "d", a)].before is None


def test_an_embedding_carries_its_entity_text_as_of_the_read(tmp_path: Path) -> None:
    path, w = _store(tmp_path)
    a = w.create_entity("a", "t", ["one"], embedding=[0.5] * 4)
    w.set_embedding(a, [0.25] * 4)
    w.conn.execute("UPDATE entities SET metadata = '{}' WHERE id = ?", (a,))  # after the vector, text kept
    got = {r.row_id: r.after for r in _page(path) if r.table == "embeddings" and isinstance(r.after, dict)}
    # The store's vector stays usable for the text (the Qdrant sink reuses it; validation wants it).
    assert (got[a]["text_name"], got[a]["text_type"], got[a]["text_observations"]) == ("a", "t", '["one"]')


def _v4_triggers(path: Path) -> None:
    """Capture as CAPTURE_VERSION 4 installed it: whole images (before and after) in the trigger."""
    conn = sqlite3.connect(path)
    state = read_state(conn)
    for table in TABLES:
        columns, key = state.columns[table], KEY_COLUMN[table]
        new, old = image_sql(table, columns, "NEW"), image_sql(table, columns, "OLD")
        target = f"INSERT INTO {CHANGELOG} (tbl, op, row_id, ts_ms, before, after)"
        for name, sql in zip(trigger_names(table), (
            f"AFTER INSERT ON {table} BEGIN {target} VALUES ('{table}', 'c', NEW.{key}, 0, NULL, {new}); END",
            f"AFTER UPDATE ON {table} BEGIN {target} VALUES ('{table}', 'u', NEW.{key}, 0, {old}, {new}); END",
            f"AFTER DELETE ON {table} BEGIN {target} VALUES ('{table}', 'd', OLD.{key}, 0, {old}, NULL); END",
        ), strict=True):  # fmt: skip
            conn.execute(f'DROP TRIGGER "{name}"')
            conn.execute(f'CREATE TRIGGER "{name}" {sql}')
    conn.execute(f"UPDATE {META} SET value = '4' WHERE key = 'version'")
    conn.commit()
    conn.close()


def _events(rig: Rig) -> list[tuple[str, int, int, dict[str, Any] | None]]:
    """(table, key, seq, record; None for a tombstone) of every committed change event, per topic in order."""
    out = []
    for table in TABLES:
        for message in rig.broker.messages(change_topic(PREFIX, table)):
            value = message.value()
            if value is not None and decode_any(value)[0] == HEARTBEAT:
                continue
            seq = parse(message.headers()).seq
            assert seq is not None
            key = message.key()
            assert key is not None
            out.append((table, decode_key(key), seq, None if value is None else decode_any(value)[1]))
    return out


def test_a_store_upgraded_from_v4_drains_its_old_images_then_the_new_changes(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.run(1.0)  # the (empty) snapshot: the stream follows it
    _v4_triggers(rig.db)
    w = MemoryWriter(rig.db)
    a = w.create_entity("old", "t", ["v4"], embedding=[0.5] * 4)
    b = w.create_entity("b", "t")
    rid = w.create_relation(a, b, "knows")
    w.rename(a, "renamed under v4")
    w.close()
    install(rig.db)  # the upgrade: the changelog of whole images stays
    w = MemoryWriter(rig.db)
    assert read_state(w.conn).version == CAPTURE_VERSION
    w.rename(a, "renamed under v5")
    w.delete_relation(rid)
    w.close()
    rig.run(2.0)  # the same daemon again: resumes after its committed position

    events = _events(rig)
    entity_a = [(seq, rec["op"], rec["after"] and rec["after"]["name"]) for t, k, seq, rec in events
                if t == "entities" and k == a and rec is not None]  # fmt: skip
    assert [op for _, op, _ in entity_a] == ["c", "u", "u"]
    assert [name for _, _, name in entity_a] == ["old", "renamed under v4", "renamed under v5"]
    assert [seq for seq, _, _ in entity_a] == sorted(seq for seq, _, _ in entity_a)
    v4_update = next(rec for t, k, _, rec in events if t == "entities" and k == a and rec and rec["op"] == "u")
    assert v4_update["before"]["name"] == "old"  # the old image, as v4 captured it
    relation = [(rec or {}).get("op") for t, k, _, rec in events if t == "relations" and k == rid]
    assert relation == ["c", "d", None]  # the delete, then its tombstone
    conn = sqlite3.connect(rig.db)
    assert changelog_rows(conn) == 0
    conn.close()


def test_every_change_is_covered_once_in_key_order_and_the_state_is_the_stores(tmp_path: Path) -> None:
    rig = Rig(tmp_path, batch_rows=7)
    rig.run(1.0)  # the (empty) snapshot: what follows is streamed
    conn = sqlite3.connect(rig.db)
    conn.executescript(
        f"""CREATE TABLE _audit (seq INTEGER PRIMARY KEY, tbl TEXT, row_id INTEGER);
        CREATE TRIGGER _audit_t AFTER INSERT ON {CHANGELOG}
        BEGIN INSERT INTO _audit VALUES (NEW.seq, NEW.tbl, NEW.row_id); END;"""
    )
    conn.close()
    w = MemoryWriter(rig.db)
    ids = [w.create_entity(f"e{i}", "t", [str(i)], embedding=[0.1 * i] * 4) for i in range(6)]
    for step in range(30):  # many changes of few rows: pages of 7 coalesce some of them
        target = ids[step % 3]
        w.add_observations(target, [f"s{step}"])
        if step % 5 == 0:
            w.set_embedding(target, [0.01 * step] * 4)
    w.create_relation(ids[0], ids[1], "knows")
    w.delete_entity(ids[1])  # cascades: the relation, the embedding, the entity
    w.close()
    rig.run(3.0)

    events = [e for e in _events(rig) if e[3] is None or e[3]["source"]["snapshot"] == "false"]
    published = [seq for _, _, seq, rec in events if rec is not None]
    assert len(published) == len(set(published))  # no seq twice
    conn = sqlite3.connect(rig.db)
    audit = conn.execute("SELECT seq, tbl, row_id FROM _audit ORDER BY seq").fetchall()
    conn.close()
    by_key: dict[tuple[str, int], list[int]] = {}
    for table, key, seq, rec in events:
        if rec is not None:
            by_key.setdefault((table, key), []).append(seq)
    for seqs in by_key.values():
        assert seqs == sorted(seqs)  # per-key order
    for seq, table, key in audit:  # each change is covered by an event of its row at its seq or later
        assert any(s >= seq for s in by_key[(table, key)]), (seq, table, key)
    assert set(published) <= {seq for seq, _, _ in audit}
    assert len(published) < len(audit)  # coalesced: fewer events than changes
    final = {(t, k): rec for t, k, _, rec in events if rec is not None}
    assert final[("entities", ids[1])]["op"] == "d" and final[("relations", 1)]["op"] == "d"
    store = MemoryWriter(rig.db)
    for entity in ids[:1] + ids[2:]:
        after = final[("entities", entity)]["after"]
        assert after["observations"] == store.observations(entity)
    store.close()


def test_a_row_no_event_carries_is_parked_with_its_image_read_in_sql(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.run(1.0)  # the (empty) snapshot
    conn = sqlite3.connect(rig.db)
    conn.execute(
        "INSERT INTO entities (name, entity_type, observations, created_at, updated_at) "
        "VALUES (CAST(x'61ff62' AS TEXT), 't', '[]', 1, 1)"
    )
    conn.execute(
        "INSERT INTO entities (name, entity_type, observations, created_at, updated_at) VALUES ('ok', 't', '[]', 1, 1)"
    )
    conn.commit()
    conn.close()
    rig.run(1.0)

    conn = sqlite3.connect(rig.db)
    conn.text_factory = bytes
    parked_rows = conn.execute("SELECT op, reason, after FROM _replicator_parked").fetchall()
    conn.close()
    assert len(parked_rows) == 1 and b"not valid UTF-8" in parked_rows[0][1]
    assert b'"name":"a\xffb"' in parked_rows[0][2]  # the row's image, its bytes as stored
    names = [rec["after"]["name"] for t, _, _, rec in _events(rig) if t == "entities" and rec and rec["after"]]
    assert names == [("ok")]
