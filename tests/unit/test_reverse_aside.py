"""What the store set aside of Neo4j's changelog is tried again once the store changed (aside.py), on
a real store cut over as in test_reverse_apply.py: the operator's natural fixes in Neo4j (delete the
other entity with the name, bring the endpoint in) bring the row in without touching it again."""

from __future__ import annotations

import datetime
import json
import sqlite3
from pathlib import Path

from replicator.reverse.apply import apply
from replicator.reverse.aside import PARKED, parked_rows, set_aside
from replicator.reverse.changelog import Change
from tests.unit.test_reverse_apply import MODEL, NS, _conn, entity, fake_embed
from tests.unit.test_reverse_apply import store as store  # noqa: PLC0414 - the fixture


def _aside(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return [(kind, row) for _, kind, row, _ in parked_rows(conn, NS)]


def test_deleting_the_entity_that_holds_the_name_brings_the_one_set_aside_in(store: Path) -> None:
    """Two Neo4j entities named alice (a retried CREATE): the store already holds entity 1 as alice, so
    60 is set aside. The operator deletes entity 1 in Neo4j; 60 is applied in the same transaction,
    with its embedding."""
    conn = _conn(store)
    apply(conn, NS, [entity(1, 60, name="alice", entity_type="person", observations=["twin"])], MODEL, fake_embed)
    assert _aside(conn) == [("entity", 60)]
    done = apply(conn, NS, [Change(2, 0, 1_002, "entity", "d", 1)], MODEL, fake_embed)
    assert done.retried == ["seq 1 entity 60"] and done.embedded == 1
    assert _aside(conn) == []
    assert conn.execute("SELECT name, observations FROM entities WHERE id = 60").fetchone() == ("alice", '["twin"]')
    assert conn.execute("SELECT count(*) FROM embeddings WHERE entity_id = 60").fetchone() == (1,)


def test_a_relation_set_aside_for_its_missing_endpoint_follows_the_endpoint_in(store: Path) -> None:
    """The relation's seq is older than its endpoint's latest set-aside change: entities are retried
    first, so both come in at once."""
    conn = _conn(store)
    apply(conn, NS, [
        entity(1, 60, name="bob", entity_type="person"),  # bob is entity 2's name
        Change(2, 0, 1_002, "relation", "u", 80, {"id": 80, "relation_type": "knows"}, 1, 60, "KNOWS"),
        entity(3, 60, name="bob", entity_type="person", observations=["later"]),
    ], MODEL, fake_embed)  # fmt: skip
    assert _aside(conn) == [("entity", 60), ("relation", 80), ("entity", 60)]
    done = apply(conn, NS, [entity(4, 2, name="robert", entity_type="person")], MODEL, fake_embed)
    assert done.retried == ["seq 3 entity 60", "seq 2 relation 80"]
    assert _aside(conn) == []
    assert conn.execute("SELECT observations FROM entities WHERE id = 60").fetchone() == ('["later"]',)
    assert conn.execute("SELECT from_entity_id, to_entity_id FROM relations WHERE id = 80").fetchone() == (1, 60)


def test_what_still_cannot_be_held_stays_set_aside_and_a_value_json_cannot_hold_is_never_retried(
    store: Path,
) -> None:
    conn = _conn(store)
    when = datetime.date(2026, 11, 30)  # a Neo4j DATE: no column of the store holds it
    dora = entity(1, 61, n=1, name="dora", entity_type="person", valid_from=when)
    apply(conn, NS, [entity(1, 60, name="bob", entity_type="person"), dora], MODEL, fake_embed)
    assert _aside(conn) == [("entity", 60), ("entity", 61)]
    image = json.loads(conn.execute(f"SELECT image FROM {PARKED} WHERE row_id = 61").fetchone()[0])
    assert image["exact"] is False and image["props"]["valid_from"] == repr(when)
    done = apply(conn, NS, [entity(2, 1, name="alice 2", entity_type="person")], MODEL, fake_embed)
    assert done.retried == [] and _aside(conn) == [("entity", 60), ("entity", 61)]
    assert conn.execute("SELECT count(*) FROM entities WHERE id IN (60, 61)").fetchone() == (0,)
    assert set_aside(conn, NS)[1].startswith("seq 1 entity 61: a date value the store's column cannot hold")


def test_a_row_set_aside_in_the_earlier_image_format_is_listed_and_never_retried(store: Path) -> None:
    conn = _conn(store)
    apply(conn, NS, [entity(1, 60, name="bob", entity_type="person")], MODEL, fake_embed)
    flat = json.dumps({"id": 60, "name": "bob", "entity_type": "person", "from_id": None, "to_id": None})
    conn.execute(f"UPDATE {PARKED} SET image = ? WHERE row_id = 60", (flat,))
    done = apply(conn, NS, [entity(2, 2, name="robert", entity_type="person")], MODEL, fake_embed)
    assert done.retried == [] and _aside(conn) == [("entity", 60)]
