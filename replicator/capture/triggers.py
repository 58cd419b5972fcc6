"""The changelog's DDL, the row-image SQL and the trigger SQL, generated from the tables' columns. Pure.

A changelog row is ``(seq, tbl, op, row_id, ts_ms, before, after)``:

* ``seq``: INTEGER PRIMARY KEY (the rowid; since CAPTURE_VERSION 6 without AUTOINCREMENT, whose
  ``sqlite_sequence`` update taxed every write): SQLite gives a new row max(seq) + 1, so seq strictly
  increases and is never reused as long as the highest row is never deleted. It is not: the source
  deletes published rows with ``delete_published``, which turns the highest of them into a *mark*
  instead, and ``install`` places a mark at the seq it starts from (docs/capture.md, "Seq").
* ``op``: ``c`` insert, ``u`` update, ``d`` delete (Debezium's letters); ``m`` a mark: no change, only
  the seq it holds (published, never read as a change, not counted as backlog).
* ``row_id``: the stable key (entities.id, relations.id, embeddings.entity_id).
* ``ts_ms``: epoch ms when the writer's statement ran (its commit follows within the transaction).
* ``before`` / ``after``: since CAPTURE_VERSION 5 the triggers record only the key: ``after`` is NULL
  and the source reads the row's state while publishing, in the read transaction of the changelog
  page (docs/capture.md, "What a changelog row holds"). ``before`` is NULL too, except where a sink
  needs the old row to find what it replaces: a relation's delete, and a relation update that moves
  its endpoints, record the relation's old image (``image_sql`` without the names it would look up).
  Rows written by older versions, by ``resync`` and by ``source retry-parked`` carry whole images
  (``after`` for c/u); the source publishes those as they are.

The image (``image_sql``), column by column, by the value's *storage class* (SQLite is dynamically
typed: any column of the writer's may hold any class, whatever its declared type):

* NULL -> ``null``; INTEGER -> a JSON number; REAL -> a JSON number with 17 significant digits
  (SQLite's printf: an exact round trip for |x| < 1e100, measured; beyond it the last digit may
  differ, so a REAL of magnitude >= 1e100 is ``["real", "<17 digits of x / 2**768>", 768]``: dividing
  by a power of two is exact, and the source multiplies it back with ``math.ldexp``);
  +/-Infinity -> ``1e999`` / ``-1e999``, which JSON parsers read as infinities (SQLite stores NaN as
  NULL, so no image holds one);
* TEXT -> a JSON string (``observations`` and ``metadata`` stay the writer's JSON *text*: a trigger
  must never fail a writer's statement because of what the writer stored);
* BLOB -> the declared BLOB column ``embeddings.embedding`` is a hex string (upper case); a BLOB in
  any other known column is ``["blob", "<HEX>"]`` (a writer bug, carried visibly, never refused);
  ``embeddings.embedding`` holding anything but a BLOB is ``[typeof, value]`` like a drifted column.
* columns the writer added after install (drift) are ``[typeof, value]`` pairs under their own
  names, the value as above (BLOB as a hex string).
* relation images add ``from_entity_name`` / ``to_entity_name`` (null if the entity is gone);
  embedding images add ``text_name``, ``text_type``, ``text_observations`` (the entity, null if gone).

Why not json_object(): SQLite (3.40.1 here, tested) does not flag its JSON functions SQLITE_INNOCUOUS, so a
writer that runs ``PRAGMA trusted_schema=OFF`` (a common hardening) would get "unsafe use of
json_object()" on every INSERT/UPDATE/DELETE -- capture would break the writer. json_object() also
raises "JSON cannot hold BLOB values" for a BLOB in a text column. The image is therefore built
with core scalar functions only (typeof, hex, replace, printf, glob, char, coalesce), each of which
is innocuous, cannot fail on any value, and accepts every storage class. ``image_sql`` is the one
generator: the relation triggers, the source's state reads, the snapshot and ``resync`` use it, so
that every image of a row is byte-identical whichever path built it.

Updates that change no column are not recorded (WHEN clause): they change nothing downstream.
``trigger_sql`` is the one place that decides when a trigger records (a condition added there
applies to every table and op). The writes of the reverse process are recorded like any other and
removed again by that process before its COMMIT (``discard_since``): since CAPTURE_VERSION 7 no
trigger reads another table to tell them apart (that lookup taxed every write of the writer).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Final

from replicator.store.schema import EMBEDDING_COLUMNS, ENTITY_COLUMNS, RELATION_COLUMNS

#: Bumped whenever the generated SQL changes; ``install`` upgrades triggers of an older version.
#: 2: images built without JSON functions (trusted_schema=OFF, BLOBs in text columns).
#: 4: REALs of magnitude >= 1e100 exact; a non-BLOB ``embeddings.embedding`` keeps its type.
#: 5: the triggers record the key only; the source reads the row's state while publishing; writes
#:    of the reverse process (REVERSE_WRITING) are not captured.
#: 6: the changelog without AUTOINCREMENT and with a CHECK of comparisons (``op IN (...)`` built an
#:    ephemeral table on every trigger's insert); seq's high mark is a mark row (MARK).
#: 7: no trigger reads the meta table (the reverse process discards what capture recorded of its own
#:    writes: ``discard_since``); an update's "changed nothing" WHEN compares updated_at/version first.
CAPTURE_VERSION: Final = 7

CHANGELOG: Final = "_replicator_changelog"
META: Final = "_replicator_meta"
TRIGGER_PREFIX: Final = "_replicator_capture_"

#: Columns of each table as STORE.md defines them; anything else is drift, carried as extra.
KNOWN_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "entities": ENTITY_COLUMNS,
    "relations": RELATION_COLUMNS,
    "embeddings": EMBEDDING_COLUMNS,
}
KEY_COLUMN: Final = {"entities": "id", "relations": "id", "embeddings": "entity_id"}
BLOB_COLUMNS: Final = frozenset({("embeddings", "embedding")})

#: The reverse process (replicator/reverse/, docs/reverse.md) inserts this key into the meta table
#: inside each of its transactions and deletes it before COMMIT, so no other connection ever sees it.
#: While it is there, the refusal's triggers (cutover/fence.py) stand aside: the reverse writes pass
#: the refusal. A crash rolls the row back with the rest. Capture's triggers do not look at it (since
#: CAPTURE_VERSION 7: a lookup on every write of the writer); the reverse process removes what they
#: recorded of its writes with ``discard_since`` instead.
REVERSE_WRITING: Final = "reverse_writing"
NOT_REVERSE_WRITE: Final = f"NOT EXISTS (SELECT 1 FROM {META} WHERE key = '{REVERSE_WRITING}')"

#: The op of a mark row: it holds a seq (the highest one assigned, or the one install starts from) so
#: that SQLite never assigns a lower one; it is no change.
MARK: Final = "m"

#: The changelog table. Its CHECK is a chain of comparisons: ``op IN ('c', 'u', 'd')`` made SQLite
#: build an ephemeral table for the list on every insert by a trigger, which cost the writer a third
#: of its time in a 2,000-row transaction (measured, docs/capture.md "Writer overhead").
CHANGELOG_TABLE_DDL: Final = f"""
CREATE TABLE {CHANGELOG} (
    seq INTEGER PRIMARY KEY,
    tbl TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op = 'c' OR op = 'u' OR op = 'd' OR op = '{MARK}'),
    row_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    before TEXT,
    after TEXT
)"""
CHANGELOG_DDL: Final = f"""{CHANGELOG_TABLE_DDL};
CREATE TABLE {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

NOW_MS: Final = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"

# Characters JSON forbids raw inside a string: U+0001..U+001F (U+0000 ends SQLite's text functions).
# A literal range in the pattern (raw control bytes inside the SQL string): building it with char()
# per row cost 4x more than the GLOB itself (measured, bench/writer_overhead.py).
_CONTROL_CLASS: Final = "'*[\x01-\x1f]*'"
_SPECIAL_CLASS: Final = "'*[\x01-\x1f\"\\]*'"  # anything JSON must escape in a string


def quote_identifier(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_string(value: str) -> str:
    """SQL: the TEXT ``value`` as a JSON string. Most text needs no escaping (one GLOB decides);
    text with '\\' or '"' (the writer's JSON text always) gets two replace() calls; text holding
    control characters (rare: the writer's JSON text escapes its own) takes a 31-step recursive CTE
    escaping each as \\u00XX (nested replace() calls would overflow SQLite's parser stack)."""
    quoted = f"replace(replace({value}, '\\', '\\\\'), '\"', '\\\"')"
    slow = (
        f"(WITH RECURSIVE esc(i, s) AS (SELECT 1, {quoted} UNION ALL "
        f"SELECT i + 1, replace(s, char(i), printf('\\u%04x', i)) FROM esc WHERE i < 32) "
        "SELECT s FROM esc WHERE i = 32)"
    )
    escaped = f"CASE WHEN {value} GLOB {_CONTROL_CLASS} THEN {slow} ELSE {quoted} END"
    plain = f"'\"' || CASE WHEN {value} GLOB {_SPECIAL_CLASS} THEN {escaped} ELSE {value} END || '\"'"
    # SQLite's string functions stop at a NUL character, so text holding one is carried as its UTF-8
    # bytes in hex, marked: ["text","HEX"] (the source turns it back into the exact text).
    return f"""CASE WHEN instr({value}, char(0)) > 0 THEN '["text","' || hex({value}) || '"]' ELSE {plain} END"""


#: ``x / 2**768`` as 24 exact divisions by 2**32 (an INTEGER literal: no decimal parsing involved).
_SCALED: Final = "{v}" + " / 4294967296" * 24
_REAL: Final = (
    "CASE WHEN abs({v}) < 1e100 THEN printf('%!.17g', {v}) "
    "WHEN abs({v}) <= 1.7976931348623157e308 THEN '[\"real\",\"' || printf('%!.17g', " + _SCALED + ") || '\",768]' "
    "WHEN {v} > 0 THEN '1e999' ELSE '-1e999' END"
)


def json_value_sql(value: str, blob: str = "marked") -> str:
    """SQL that renders any SQLite value as JSON text, never NULL, never failing.

    ``blob``: ``"marked"`` renders a BLOB as ``["blob","HEX"]``, ``"hex"`` as ``"HEX"``.
    """
    blob_sql = f"""'["blob","' || hex({value}) || '"]'""" if blob == "marked" else f"""'"' || hex({value}) || '"'"""
    return (
        f"CASE typeof({value}) WHEN 'null' THEN 'null' WHEN 'integer' THEN CAST({value} AS TEXT) "
        f"WHEN 'real' THEN {_REAL.format(v=value)} WHEN 'text' THEN {_json_string(value)} ELSE {blob_sql} END"
    )


def _members(keys: Sequence[str]) -> str:
    """The printf() format of JSON object members with these keys, each value a ``%s`` of JSON text."""
    return ",".join(json.dumps(key).replace("%", "%%") + ":%s" for key in keys)


_MAX_PRINTF_ARGS: Final = 100  # SQLite's default limit is 127 arguments per function call


def _object(fields: Sequence[tuple[str, str]], tail: str | None = None) -> str:
    """SQL building a JSON object from (key, SQL yielding JSON text) pairs, plus ``tail``: SQL yielding
    more members as a raw ``"k":v,...`` fragment. One printf() writes it into a single buffer: a
    chain of ``||`` would copy the growing image once per column (measured: the 3 KB embedding hex)."""
    args = [v for _, v in fields] + ([tail] if tail else [])
    if len(args) <= _MAX_PRINTF_ARGS:
        members = _members([k for k, _ in fields]) + (",%s" if tail else "")
        return f"printf({_sql_text('{' + members + '}')}, {', '.join(args)})"
    parts = [f"{_sql_text(json.dumps(k))} || ':' || {v}" for k, v in fields] + ([tail] if tail else [])
    return "('{' || " + " || ',' || ".join(parts) + " || '}')"


def image_sql(table: str, columns: Sequence[str], ref: str, *, lookups: bool = True) -> str:
    """SQL for the JSON image of the row ``ref`` (``OLD`` in a trigger, or a table alias in a SELECT
    over ``table``). ``columns``: the table's columns the image is generated for. ``lookups``: add the
    fields read from the row's entities (relation endpoint names, embedding text); without them those
    fields are absent (a trigger never reads other rows: it would tax every write). Pure."""
    known = KNOWN_COLUMNS[table]
    fields: list[tuple[str, str]] = []
    for column in columns:
        value = f"{ref}.{quote_identifier(column)}"
        if column == KEY_COLUMN[table]:
            rendered = f"CAST({value} AS TEXT)"  # the rowid alias: always an INTEGER
        elif (table, column) in BLOB_COLUMNS:
            typed = f"""'["' || typeof({value}) || '",' || {json_value_sql(value)} || ']'"""
            rendered = f"""CASE typeof({value}) WHEN 'blob' THEN '"' || hex({value}) || '"' ELSE {typed} END"""
        elif column in known:
            rendered = json_value_sql(value)
        else:
            rendered = f"""'["' || typeof({value}) || '",' || {json_value_sql(value, blob="hex")} || ']'"""
        fields.append((column, rendered))
    tail = None
    if lookups and table == "relations":
        for key, column in (("from_entity_name", "from_entity_id"), ("to_entity_name", "to_entity_id")):
            lookup = f"(SELECT {json_value_sql('e.name')} FROM entities AS e WHERE e.id = {ref}.{column})"
            fields.append((key, f"coalesce({lookup}, 'null')"))
    if lookups and table == "embeddings":
        # One lookup for the three fields: the subquery yields them as one fragment of members.
        text_fields = (("text_name", "name"), ("text_type", "entity_type"), ("text_observations", "observations"))
        values = ", ".join(json_value_sql("e." + column) for _, column in text_fields)
        absent = _sql_text(_members([k for k, _ in text_fields]).replace("%s", "null"))
        lookup = (
            f"(SELECT printf({_sql_text(_members([k for k, _ in text_fields]))}, {values}) "
            f"FROM entities AS e WHERE e.id = {ref}.entity_id)"
        )
        tail = f"coalesce({lookup}, {absent})"
    return _object(fields, tail)


def trigger_names(table: str) -> tuple[str, str, str]:
    return (f"{TRIGGER_PREFIX}{table}_c", f"{TRIGGER_PREFIX}{table}_u", f"{TRIGGER_PREFIX}{table}_d")


#: The endpoints of a relation: when an update moves them, the trigger keeps the old image, so the
#: sinks can find the relationship it replaces.
_ENDPOINTS: Final = ("from_entity_id", "to_entity_id")


def _before_sql(table: str, columns: Sequence[str], op: str) -> str:
    """What the trigger records as ``before``: NULL, except the old image of a relation that is
    deleted or whose endpoints move (without lookups: names are read by the source)."""
    if table != "relations" or op == "c":
        return "NULL"
    image = image_sql(table, columns, "OLD", lookups=False)
    if op == "d":
        return image
    moved = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _ENDPOINTS if c in columns)
    return f"CASE WHEN {moved} THEN {image} END" if moved else "NULL"


#: Columns a writer changes on every real update (STORE.md: ``updated_at`` epoch ms, ``version``):
#: compared first, the "changed nothing" test of an update usually stops at its first comparison.
_CHANGED_FIRST: Final = ("updated_at", "version")


def trigger_sql(table: str, columns: Sequence[str]) -> list[str]:
    """CREATE TRIGGER statements (insert, update, delete) for ``table`` with these columns. The one
    place that decides when a change is recorded: the update trigger's WHEN skips updates that change
    no column (every column is compared; the order only decides how soon a change is seen); a
    condition for every op belongs here too. No trigger reads another table."""
    insert_name, update_name, delete_name = trigger_names(table)
    key = quote_identifier(KEY_COLUMN[table])
    target = f"INSERT INTO {CHANGELOG} (tbl, op, row_id, ts_ms, before)"
    ordered = [c for c in _CHANGED_FIRST if c in columns] + [c for c in columns if c not in _CHANGED_FIRST]
    changed = " OR ".join(f"OLD.{quote_identifier(c)} IS NOT NEW.{quote_identifier(c)}" for c in ordered)
    return [
        f"CREATE TRIGGER {insert_name} AFTER INSERT ON {table} BEGIN "
        f"{target} VALUES ('{table}', 'c', NEW.{key}, {NOW_MS}, NULL); END",
        f"CREATE TRIGGER {update_name} AFTER UPDATE ON {table} WHEN {changed} BEGIN "
        f"{target} VALUES ('{table}', 'u', NEW.{key}, {NOW_MS}, {_before_sql(table, columns, 'u')}); END",
        f"CREATE TRIGGER {delete_name} AFTER DELETE ON {table} BEGIN "
        f"{target} VALUES ('{table}', 'd', OLD.{key}, {NOW_MS}, {_before_sql(table, columns, 'd')}); END",
    ]


def discard_since(conn: sqlite3.Connection, seq: int) -> int:
    """Delete the changelog rows above ``seq``: what the triggers recorded of the caller's own writes,
    ``seq`` being ``head_seq`` read after the caller's ``BEGIN IMMEDIATE`` (no other writer can add a
    row in between). In the caller's write transaction; no other connection ever saw those rows, so
    the next change gets ``seq + 1`` again and no seq anyone saw is reused. The reverse process's
    writes are not forward changes (docs/reverse.md). Returns the number of rows deleted; 0 on a
    store without capture. Idempotent."""
    try:
        return conn.execute(f"DELETE FROM {CHANGELOG} WHERE seq > ?", (seq,)).rowcount
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise


def _one(conn: sqlite3.Connection, sql: str, *args: object) -> int:
    """The integer ``sql`` yields (0 for NULL, no row, or a table that does not exist)."""
    try:
        row = conn.execute(sql, args).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    return 0 if row is None or row[0] is None else int(row[0])


def head_seq(conn: sqlite3.Connection) -> int:
    """The changelog's highest seq ever assigned (0 if none). Read-only. Since CAPTURE_VERSION 6 the
    highest row (a change or a mark) holds it; a changelog of an older version kept it in
    ``sqlite_sequence`` (AUTOINCREMENT), which is read too until ``install`` upgrades it."""
    highest = _one(conn, f"SELECT max(seq) FROM {CHANGELOG}")
    return max(highest, _one(conn, "SELECT seq FROM sqlite_sequence WHERE name = ?", CHANGELOG))


def changelog_rows(conn: sqlite3.Connection, after: int = 0) -> int:
    """How many changelog rows with seq > ``after`` wait to be published (deleted once they are; a mark
    is not a change and does not count). Read-only."""
    return _one(conn, f"SELECT count(*) FROM {CHANGELOG} WHERE seq > ? AND op <> '{MARK}'", after)


def place_mark(conn: sqlite3.Connection, seq: int) -> None:
    """Append a mark at ``seq`` (above every row): the next change gets ``seq + 1``. In the caller's
    write transaction."""
    conn.execute(f"INSERT INTO {CHANGELOG} (seq, tbl, op, row_id, ts_ms) VALUES (?, '', '{MARK}', 0, {NOW_MS})", (seq,))


def delete_published(conn: sqlite3.Connection, up_to: int) -> None:
    """Delete the changelog rows with seq <= ``up_to`` (published), except the highest row of the
    changelog, which becomes a mark if it is among them: SQLite assigns the next seq after the highest
    row, so deleting it would let a later change reuse its seq (and an empty changelog restart at 1).
    In the caller's write transaction (the writer cannot insert in between). Idempotent."""
    conn.execute(
        f"UPDATE {CHANGELOG} SET tbl = '', op = '{MARK}', row_id = 0, before = NULL, after = NULL "
        f"WHERE seq = (SELECT max(seq) FROM {CHANGELOG}) AND seq <= ? AND op <> '{MARK}'",
        (up_to,),
    )
    conn.execute(f"DELETE FROM {CHANGELOG} WHERE seq <= ? AND seq < (SELECT max(seq) FROM {CHANGELOG})", (up_to,))
