"""The changelog's DDL and the trigger SQL, generated from the tables' current columns. Pure.

A changelog row is ``(seq, tbl, op, row_id, ts_ms, before, after)``:

* ``seq``: INTEGER PRIMARY KEY AUTOINCREMENT, so it strictly increases and is never reused, even
  after published rows are deleted (AUTOINCREMENT keeps its high mark in sqlite_sequence).
* ``op``: ``c`` insert, ``u`` update, ``d`` delete (Debezium's letters).
* ``row_id``: the stable key (entities.id, relations.id, embeddings.entity_id).
* ``ts_ms``: epoch ms when the writer's statement ran (its commit follows within the transaction).
* ``before`` / ``after``: the row image as a JSON object built with SQLite's json_object. Text
  columns are copied as text (``observations`` and ``metadata`` stay the writer's JSON *text*: a
  trigger must never fail a writer's statement because of what the writer stored). BLOBs are hex.
  Relation images add ``from_entity_name`` / ``to_entity_name`` resolved at capture time; embedding
  images add the entity's name, type and observations (``text_*``) at capture time. Columns the
  writer added after install are carried as ``[typeof, value]`` pairs under their own names.

Updates that change no column are not recorded (WHEN clause): they change nothing downstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

#: Bumped whenever the generated SQL changes; ``install`` upgrades triggers of an older version.
CAPTURE_VERSION: Final = 1

CHANGELOG: Final = "_replicator_changelog"
META: Final = "_replicator_meta"
TRIGGER_PREFIX: Final = "_replicator_capture_"

#: Columns of each table as STORE.md defines them; anything else is drift, carried as extra.
KNOWN_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "entities": (
        "id",
        "name",
        "entity_type",
        "observations",
        "confidence",
        "strength",
        "version",
        "created_at",
        "updated_at",
        "valid_from",
        "valid_to",
        "metadata",
    ),
    "relations": (
        "id",
        "from_entity_id",
        "to_entity_id",
        "relation_type",
        "strength",
        "confidence",
        "created_at",
        "updated_at",
        "valid_from",
        "valid_to",
        "metadata",
    ),
    "embeddings": ("entity_id", "embedding", "model_version", "created_at"),
}
KEY_COLUMN: Final = {"entities": "id", "relations": "id", "embeddings": "entity_id"}
BLOB_COLUMNS: Final = frozenset({("embeddings", "embedding")})

CHANGELOG_DDL: Final = f"""
CREATE TABLE IF NOT EXISTS {CHANGELOG} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('c', 'u', 'd')),
    row_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    before TEXT,
    after TEXT
);
CREATE TABLE IF NOT EXISTS {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_NOW_MS: Final = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _image(table: str, columns: Sequence[str], ref: str) -> str:
    """json_object(...) of the row ``ref`` (NEW or OLD)."""
    parts: list[str] = []
    known = KNOWN_COLUMNS[table]
    for column in columns:
        value = f"{ref}.{_quote(column)}"
        if (table, column) in BLOB_COLUMNS:
            value = f"hex({value})"
        elif column not in known:
            value = f"json_array(typeof({value}), CASE typeof({value}) WHEN 'blob' THEN hex({value}) ELSE {value} END)"
        parts.append(f"'{column.replace(chr(39), chr(39) * 2)}', {value}")
    if table == "relations":
        parts.append(f"'from_entity_name', (SELECT name FROM entities WHERE id = {ref}.from_entity_id)")
        parts.append(f"'to_entity_name', (SELECT name FROM entities WHERE id = {ref}.to_entity_id)")
    if table == "embeddings":
        for key, column in (("text_name", "name"), ("text_type", "entity_type"), ("text_observations", "observations")):
            parts.append(f"'{key}', (SELECT {column} FROM entities WHERE id = {ref}.entity_id)")
    return "json_object(" + ", ".join(parts) + ")"


def trigger_names(table: str) -> tuple[str, str, str]:
    return tuple(f"{TRIGGER_PREFIX}{table}_{op}" for op in ("c", "u", "d"))  # type: ignore[return-value]


def trigger_sql(table: str, columns: Sequence[str]) -> list[str]:
    """CREATE TRIGGER statements (insert, update, delete) for ``table`` with these columns."""
    insert_name, update_name, delete_name = trigger_names(table)
    key = KEY_COLUMN[table]
    target = f"INSERT INTO {CHANGELOG} (tbl, op, row_id, ts_ms, before, after)"
    changed = " OR ".join(f"OLD.{_quote(c)} IS NOT NEW.{_quote(c)}" for c in columns)
    return [
        f"CREATE TRIGGER {insert_name} AFTER INSERT ON {table} BEGIN "
        f"{target} VALUES ('{table}', 'c', NEW.{key}, {_NOW_MS}, NULL, {_image(table, columns, 'NEW')}); END",
        f"CREATE TRIGGER {update_name} AFTER UPDATE ON {table} WHEN {changed} BEGIN "
        f"{target} VALUES ('{table}', 'u', NEW.{key}, {_NOW_MS}, {_image(table, columns, 'OLD')}, "
        f"{_image(table, columns, 'NEW')}); END",
        f"CREATE TRIGGER {delete_name} AFTER DELETE ON {table} BEGIN "
        f"{target} VALUES ('{table}', 'd', OLD.{key}, {_NOW_MS}, {_image(table, columns, 'OLD')}, NULL); END",
    ]
