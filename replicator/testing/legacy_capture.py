"""Capture's triggers as an older CAPTURE_VERSION generated them (frozen copies): what a store
installed by that version holds, for the upgrade tests and the writer-overhead bench's "before"
figure measured in the same run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from replicator.capture.triggers import CHANGELOG, KEY_COLUMN, META, NOW_MS, quote_identifier, trigger_names
from replicator.capture.triggers import _before_sql as before_sql

#: v5 and v6 skipped the reverse process's writes with this lookup, in every trigger.
V6_NOT_REVERSE_WRITE: Final = f"NOT EXISTS (SELECT 1 FROM {META} WHERE key = 'reverse_writing')"


def v6_trigger_sql(table: str, columns: Sequence[str]) -> list[str]:
    """The CREATE TRIGGER statements of CAPTURE_VERSION 6 (and 5: the same SQL) for ``table``."""
    insert_name, update_name, delete_name = trigger_names(table)
    key = quote_identifier(KEY_COLUMN[table])
    target = f"INSERT INTO {CHANGELOG} (tbl, op, row_id, ts_ms, before)"
    changed = " OR ".join(f"OLD.{quote_identifier(c)} IS NOT NEW.{quote_identifier(c)}" for c in columns)
    check = V6_NOT_REVERSE_WRITE
    return [
        f"CREATE TRIGGER {insert_name} AFTER INSERT ON {table} WHEN {check} BEGIN "
        f"{target} VALUES ('{table}', 'c', NEW.{key}, {NOW_MS}, NULL); END",
        f"CREATE TRIGGER {update_name} AFTER UPDATE ON {table} WHEN ({changed}) AND {check} BEGIN "
        f"{target} VALUES ('{table}', 'u', NEW.{key}, {NOW_MS}, {before_sql(table, columns, 'u')}); END",
        f"CREATE TRIGGER {delete_name} AFTER DELETE ON {table} WHEN {check} BEGIN "
        f"{target} VALUES ('{table}', 'd', OLD.{key}, {NOW_MS}, {before_sql(table, columns, 'd')}); END",
    ]
