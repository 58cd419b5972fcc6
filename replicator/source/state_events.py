"""The stream's common case in one pass: a row's state read by columns -> the Avro bytes of its event.

``convert.convert_change`` takes this path for a ``c``/``u`` whose ``after`` is a state read by
columns (``store.StoreReader``) and no ``before``: almost every event of the stream; and
``convert.convert_snapshot_row`` for every snapshot row read by columns. Per table, the
values are picked from the state in the record's field order (one ``itemgetter`` call) and written by
a ``ChangeWriter`` built once from the schema (``events/binary.py``), so no record dict is built and
no value is checked twice. Anything unusual (a value of a class its field does not carry, TEXT that is
not valid UTF-8, observations that are not a JSON array of strings, the key -1, a non-BLOB vector)
returns None, and ``convert_change`` takes the general path, which converts exactly, warns, or
parks the row naming the value. Both paths give the same bytes (tests/unit/test_event_binary.py).

Pure; the writers are built once per process (cached).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from operator import itemgetter
from typing import Any, Final

from replicator import __version__
from replicator.events.avro import EMBEDDING_CHANGE, ENTITY_CHANGE, RELATION_CHANGE, codec
from replicator.events.binary import ChangeWriter, Unwritable
from replicator.events.envelope import CONNECTOR
from replicator.events.values import embedding_text

#: Table -> its change schema, and the record its ``before`` / ``after`` hold.
SCHEMA_OF: Final = {"entities": ENTITY_CHANGE, "relations": RELATION_CHANGE, "embeddings": EMBEDDING_CHANGE}
RECORD_OF: Final = {"entities": "caxton.memory.Entity", "relations": "caxton.memory.Relation",
                    "embeddings": "caxton.memory.Embedding"}  # fmt: skip
#: The key heartbeats use on the change topics (a row with this id is parked: compaction would drop it).
HEARTBEAT_KEY_ID: Final = -1

State = dict[str, Any]


def _observations(stored: object) -> list[str]:
    """The decoded list of a JSON array of strings; anything else goes the general path."""
    if stored.__class__ is not str:
        raise Unwritable("observations are not TEXT")
    try:
        items = json.loads(stored)
    except ValueError:
        raise Unwritable("observations are not JSON") from None
    if items.__class__ is not list or any(item.__class__ is not str for item in items):
        raise Unwritable("observations are not a JSON array of strings")
    return items


def _own_key(key: object) -> None:
    if key == HEARTBEAT_KEY_ID:
        raise Unwritable("the heartbeats' key")


def _values_builder(table: str, fields: tuple[str, ...]) -> Callable[[State], list[object]]:
    """state -> the record's values in ``fields`` order; raises Unwritable for the general path."""
    if fields[-1] != "extra":  # a state read by columns holds every column capture knows: no extra
        raise Unwritable(f"{RECORD_OF[table]} does not end with extra")
    if table == "entities":
        at = fields.index("observations")
        pick = itemgetter(*fields[:-1])

        def entity(state: State) -> list[object]:
            values = list(pick(state))
            _own_key(values[0])
            values[at] = _observations(values[at])
            values.append(None)
            return values

        return entity
    if table == "relations":
        pick = itemgetter(*fields[:-1])  # the state holds from_entity_name / to_entity_name as looked up

        def relation(state: State) -> list[object]:
            values = list(pick(state))
            _own_key(values[0])
            values.append(None)
            return values

        return relation
    if fields != ("entity_id", "vector", "model_version", "created_at", "text", "extra"):
        raise Unwritable(f"{RECORD_OF[table]} has fields {fields}")

    def embedding(state: State) -> list[object]:
        _own_key(state["entity_id"])
        if state["embedding"].__class__ is not bytes:  # read by columns: any other class comes as a pair
            raise Unwritable("the embedding is not a BLOB")
        name = state["text_name"]
        text = None if name is None else embedding_text(name, state["text_type"], state["text_observations"])
        return [state["entity_id"], state["embedding"], state["model_version"], state["created_at"], text, None]

    return embedding


@cache
def _writer(table: str) -> tuple[ChangeWriter, Callable[[State], list[object]]]:
    change = codec(SCHEMA_OF[table])
    writer = ChangeWriter(change.schema, change.header, RECORD_OF[table], CONNECTOR, __version__)
    return writer, _values_builder(table, writer.fields)


def encode_state(
    table: str, op: str, state: State, *, store_id: str, seq: int, ts_ms: int, produced_ms: int,
    snapshot: str = "false",
) -> bytes | None:  # fmt: skip
    """The value of the ``op`` (c, u, or r with ``snapshot`` true|last) event of ``state`` with no
    ``before``; None when the general path must decide (an odd value, see the module docstring)."""
    try:
        writer, values = _writer(table)
        return writer.encode(op, values(state), store=store_id, table=table, seq=seq, snapshot=snapshot,
                             ts_ms=ts_ms, produced_ms=produced_ms)  # fmt: skip
    except (Unwritable, KeyError):
        return None
