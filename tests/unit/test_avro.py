"""The Avro single-object codec: round trips, and named errors for bytes that are not ours."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicator.errors import SchemaError
from replicator.events.avro import ENTITY_CHANGE, RELATION_CHANGE, codec
from replicator.smoke import entity_change

_long = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_text = st.text(max_size=40)


def _relation(**overrides: Any) -> dict[str, Any]:
    row = {
        "id": 7, "from_entity_id": 1, "to_entity_id": 2, "relation_type": "depends on", "strength": 0.5,
        "confidence": 1.0, "created_at": 1, "updated_at": 2, "valid_from": None, "valid_to": 99, "metadata": None,
        "from_entity_name": "a", "to_entity_name": None, "extra": {"added_later": "[\"integer\", 3]"},
    }  # fmt: skip
    return {**row, **overrides}


def _source(table: str) -> dict[str, Any]:
    return {"connector": "caxton-sqlite", "version": "0", "store": "s", "table": table, "seq": 1,
            "snapshot": "true", "ts_ms": 5}  # fmt: skip


@given(
    entity_id=_long,
    name=_text,
    entity_type=_text,
    observations=st.lists(_text, max_size=5),
    seq=st.integers(0, 2**40),
)
def test_entity_change_round_trips(
    entity_id: int, name: str, entity_type: str, observations: list[str], seq: int
) -> None:
    event = entity_change(entity_id, name, entity_type, observations, seq)
    c = codec(ENTITY_CHANGE)

    assert c.decode(c.encode(event)) == event


@pytest.mark.parametrize("op", ["c", "u", "d", "r"])
def test_relation_change_round_trips_every_op(op: str) -> None:
    before = None if op in ("c", "r") else _relation()
    after = None if op == "d" else _relation(strength=0.75)
    event = {"op": op, "before": before, "after": after, "source": _source("relations"), "ts_ms": 6}
    c = codec(RELATION_CHANGE)

    assert c.decode(c.encode(event)) == event


def test_encoded_message_starts_with_single_object_header_and_fingerprint() -> None:
    c = codec(ENTITY_CHANGE)
    data = c.encode(entity_change(1, "a", "b", [], 1))

    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == c.fingerprint[::-1]  # little-endian, as the Avro spec stores it
    assert codec(ENTITY_CHANGE).fingerprint != codec(RELATION_CHANGE).fingerprint


def test_foreign_bytes_are_a_schema_error_with_a_hint() -> None:
    with pytest.raises(SchemaError, match="not an Avro single-object message") as info:
        codec(ENTITY_CHANGE).decode(b'{"json": true}')
    assert "dead-letter" in info.value.hint


def test_message_of_another_schema_names_both_fingerprints() -> None:
    relation_bytes = codec(RELATION_CHANGE).encode(
        {"op": "c", "before": None, "after": _relation(), "source": _source("relations"), "ts_ms": 1}
    )
    with pytest.raises(SchemaError, match=re.escape(codec(ENTITY_CHANGE).fingerprint.hex())):
        codec(ENTITY_CHANGE).decode(relation_bytes)


def test_truncated_body_is_a_schema_error() -> None:
    data = codec(ENTITY_CHANGE).encode(entity_change(1, "name", "type", ["an observation"], 1))
    with pytest.raises(SchemaError, match="corrupt"):
        codec(ENTITY_CHANGE).decode(data[:-12])


def test_record_that_does_not_fit_is_refused_on_encode() -> None:
    bad = entity_change(1, "a", "b", [], 1)
    bad["op"] = "x"
    with pytest.raises(SchemaError, match="does not fit"):
        codec(ENTITY_CHANGE).encode(bad)


def test_unknown_schema_name_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match=r"no Avro schema named caxton\.memory\.Nope"):
        codec("caxton.memory.Nope")
