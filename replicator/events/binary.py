"""Avro binary encoding of change events without fastavro's per-call cost, for the source's hot path.

``Codec.encode`` (fastavro's ``schemaless_writer``) re-resolves the schema on every call and walks
every field and union generically: most of the source's CPU per event. ``ChangeWriter`` is built
once per change schema, from the schema itself (field order, union branches, enum symbols), and
writes an event whose ``after`` is a table row straight from a tuple of its values: each value
picks its union branch by its Python class (the one rule ``source/convert.py`` applies), and the
envelope's constant parts (op, the null ``before``, ``source``'s connector, version, store and
table) are bytes computed once. Its output is byte-identical to ``codec(name).encode`` of the same
event (tests/unit/test_event_binary.py compares them over every table and op); a value it has no
branch for raises ``Unwritable``, and the caller takes the general path, which names the problem.

Pure (the caches of encoded longs and of ``source`` bytes per store and table only save work).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

from replicator.errors import SchemaError

_DOUBLE: Final = struct.Struct("<d").pack
_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
#: Python class of a SQLite value -> the Avro type that carries it (as ``convert._AVRO_TYPE``).
_BRANCH_OF: Final = {type(None): "null", int: "long", float: "double", str: "string", bytes: "bytes"}


class Unwritable(ValueError):
    """A value this writer has no branch for (or cannot encode); the general path decides."""


def long_bytes(n: int) -> bytes:
    """Avro ``long``: zigzag, then a little-endian base-128 varint. Raises Unwritable outside 64 bits."""
    if 0 <= n < 64:
        return _SMALL[n]
    found = _RECENT.get(n)
    if found is not None:
        return found
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise Unwritable(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    if len(_RECENT) >= _RECENT_MAX:
        _RECENT.clear()
    found = _RECENT[n] = bytes(out)
    return found


_SMALL: Final = [bytes((n << 1,)) for n in range(64)]
#: Longs written lately: a batch's events share their produced time, a transaction's rows its commit
#: time and created/updated times. Bounded; a race between threads only recomputes an entry.
_RECENT: Final[dict[int, bytes]] = {}
_RECENT_MAX: Final = 4096


def string_bytes(text: str) -> bytes:
    """Avro ``string``. Raises Unwritable for text that is not valid Unicode (lone surrogates)."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Unwritable(str(exc)) from exc
    return long_bytes(len(raw)) + raw


def _bytes(value: bytes) -> bytes:
    return long_bytes(len(value)) + value


def _string_array(items: list[str]) -> bytes:
    """Avro ``array<string>``: one block of all items, then the empty block (fastavro's layout)."""
    if not items:
        return b"\x00"
    return long_bytes(len(items)) + b"".join([string_bytes(item) for item in items]) + b"\x00"


_ENCODER: Final[dict[str, Callable[[Any], bytes] | None]] = {
    "null": None, "long": long_bytes, "double": _DOUBLE, "string": string_bytes, "bytes": _bytes,
}  # fmt: skip

#: One field: Python class of the value -> (union branch index as bytes, encoder of the value).
Plan = dict[type, tuple[bytes, Callable[[Any], bytes] | None]]


def _branch_name(branch: object) -> str:
    if isinstance(branch, str):
        return branch
    if isinstance(branch, dict):
        return str(branch.get("type"))
    raise SchemaError(f"unexpected union branch {branch!r:.60}", hint="fix the .avsc file in schemas/")


def _field_plan(avro_type: object) -> Plan:
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    names = [_branch_name(b) for b in branches]
    plan: Plan = {}
    for cls, name in _BRANCH_OF.items():
        if name in names:
            prefix = long_bytes(names.index(name)) if isinstance(avro_type, list) else b""
            plan[cls] = (prefix, _ENCODER[name])
    if "array" in names and isinstance(avro_type, list):  # observations: array<string> (the decoded list)
        plan[list] = (long_bytes(names.index("array")), _string_array)
    return plan


def _record_schema(node: object, name: str) -> dict[str, Any] | None:
    """The (parsed, expanded) record schema named ``name`` inside ``node``."""
    if isinstance(node, list):
        for item in node:
            found = _record_schema(item, name)
            if found is not None:
                return found
    elif isinstance(node, dict):
        if node.get("type") == "record" and node.get("name") == name:
            return node
        for key in ("fields", "type"):
            found = _record_schema(node.get(key), name)
            if found is not None:
                return found
    return None


def _expect(names: Sequence[str], wanted: Sequence[str], what: str) -> None:
    if tuple(names) != tuple(wanted):
        raise SchemaError(
            f"{what} has fields {', '.join(names)}; the event writer is built for {', '.join(wanted)}",
            hint="update replicator/events/binary.py together with the schema",
        )


class ChangeWriter:
    """Writes one change schema's events whose ``before`` is null and whose ``after`` is a row.
    Raises SchemaError at construction when the schema's layout is not the one it writes."""

    def __init__(self, schema: dict[str, Any], header: bytes, row_record: str, connector: str, version: str) -> None:
        fields = {f["name"]: f for f in schema["fields"]}
        _expect(list(fields), ("op", "before", "after", "source", "ts_ms"), schema["name"])
        row = _record_schema(schema, row_record)
        source = _record_schema(schema, "caxton.memory.Source")
        if row is None or source is None:
            raise SchemaError(f"{schema['name']} holds no {row_record} or Source", hint="fix the .avsc file")
        _expect([f["name"] for f in source["fields"]],
                ("connector", "version", "store", "table", "seq", "snapshot", "ts_ms"), "Source")  # fmt: skip
        #: The row record's field names, in the order ``encode`` takes their values.
        self.fields: tuple[str, ...] = tuple(f["name"] for f in row["fields"])
        self._plans = [_field_plan(f["type"]) for f in row["fields"]]
        ops = _record_schema_symbols(fields["op"]["type"])
        after = [b if isinstance(b, str) else b.get("name") for b in fields["after"]["type"]]
        before = [b if isinstance(b, str) else b.get("name") for b in fields["before"]["type"]]
        snapshot = next(f for f in source["fields"] if f["name"] == "snapshot")
        #: header + op + the null ``before`` + ``after``'s branch, per op.
        envelope = long_bytes(before.index("null")) + long_bytes(after.index(row_record))
        self._head = {op: header + long_bytes(i) + envelope for i, op in enumerate(ops)}
        self._snapshot = {s: long_bytes(i) for i, s in enumerate(_record_schema_symbols(snapshot["type"]))}
        self._constant = string_bytes(connector) + string_bytes(version)
        self._source: dict[tuple[str, str], bytes] = {}

    def encode(
        self, op: str, values: Sequence[object], *, store: str, table: str, seq: int, snapshot: str, ts_ms: int,
        produced_ms: int,
    ) -> bytes:  # fmt: skip
        """The event: ``values`` in ``fields`` order (a list for an array, None for null). Raises
        Unwritable for a value of a class its field has no branch for, or one Avro cannot carry."""
        out = [self._head[op]]
        append = out.append
        if len(values) != len(self._plans):
            raise Unwritable(f"{len(values)} values for {len(self._plans)} fields")
        for plan, value in zip(self._plans, values):  # noqa: B905 - lengths checked above (hot loop)
            try:
                prefix, encode = plan[value.__class__]
            except KeyError:
                raise Unwritable(f"no branch for {type(value).__name__}") from None
            append(prefix)
            if encode is not None:
                append(encode(value))
        source = self._source.get((store, table))
        if source is None:
            source = self._source[(store, table)] = self._constant + string_bytes(store) + string_bytes(table)
        out += (source, long_bytes(seq), self._snapshot[snapshot], long_bytes(ts_ms), long_bytes(produced_ms))
        return b"".join(out)


def _record_schema_symbols(node: object) -> list[str]:
    """An enum's symbols (the parsed schema inlines the named enum at its first use)."""
    if isinstance(node, dict) and node.get("type") == "enum":
        return [str(s) for s in node["symbols"]]
    raise SchemaError(f"expected an enum, found {node!r:.60}", hint="fix the .avsc file in schemas/")
