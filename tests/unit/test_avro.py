"""The Avro single-object codec: round trips, and named errors for bytes that are not ours."""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from fastavro import schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given
from hypothesis import strategies as st

from replicator.errors import SchemaError
from replicator.events.avro import EMBEDDING_CHANGE, ENTITY_CHANGE, RELATION_CHANGE, codec, decode_any, history
from replicator.events.registry import (
    RegistryDecoder,
    RegistryEncoder,
    RegistryError,
    SchemaRegistryClient,
    frame,
    unframe,
)
from replicator.stack.smoke import entity_change

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


# -- older writer schemas (schemas/history/) --------------------------------------------------------


def _v1_entity_change() -> tuple[bytes, dict[str, Any]]:
    old = next(c for c in history().values() if c.name == ENTITY_CHANGE)
    after = {"id": 3, "name": "ada", "entity_type": "person", "observations": ["o"], "confidence": 0.5,
             "strength": 1.0, "version": 2, "created_at": 1, "updated_at": 2, "valid_from": None, "valid_to": None,
             "metadata": "{}"}  # fmt: skip
    event = {"op": "u", "before": after, "after": after, "source": _source("entities"), "ts_ms": 9}
    out = io.BytesIO()
    out.write(old.header)
    schemaless_writer(out, old.schema, event)
    return out.getvalue(), event


def test_history_holds_every_schema_shipped_before() -> None:
    versions = {(c.name, c.fingerprint.hex()) for c in history().values()}
    assert versions == {
        (ENTITY_CHANGE, "d5653e7f2659f773"), (RELATION_CHANGE, "89462cbb3b0352ac"),  # before the extra fields
        (ENTITY_CHANGE, "085042ca2e73165a"), (RELATION_CHANGE, "e1e6c8984c0af176"),  # before exact values
        (EMBEDDING_CHANGE, "dd95256d41b6f940"),
    }  # fmt: skip


def test_a_message_written_before_exact_values_decodes_into_the_current_shape() -> None:
    old = next(c for c in history().values() if c.fingerprint.hex() == "085042ca2e73165a")
    after = {"id": 3, "name": "ada", "entity_type": "person", "observations": ["o"], "confidence": 0.5,
             "strength": 1.0, "version": 2, "created_at": 1, "updated_at": 2, "valid_from": None, "valid_to": 7,
             "metadata": "{}", "extra": None}  # fmt: skip
    event = {"op": "c", "before": None, "after": after, "source": _source("entities"), "ts_ms": 9}
    out = io.BytesIO()
    out.write(old.header)
    schemaless_writer(out, old.schema, event)
    assert decode_any(out.getvalue()) == (ENTITY_CHANGE, event)


def test_message_written_with_an_older_schema_decodes_into_the_current_shape() -> None:
    data, event = _v1_entity_change()

    name, record = decode_any(data)

    assert name == ENTITY_CHANGE
    assert record["after"] == {**event["after"], "extra": None}
    assert codec(ENTITY_CHANGE).decode(data) == record
    with pytest.raises(SchemaError, match="fingerprint d5653e7f2659f773"):
        codec(RELATION_CHANGE).decode(data)  # an old EntityChange is no RelationChange


def test_unknown_fingerprint_is_still_refused() -> None:
    data = bytearray(codec(ENTITY_CHANGE).encode(entity_change(1, "a", "b", [], 1)))
    data[5] ^= 0xFF
    with pytest.raises(SchemaError, match="not a change event this replicator knows"):
        decode_any(bytes(data))


# -- Confluent Schema Registry framing and client, against an in-process fake -----------------------


class _FakeRegistry(BaseHTTPRequestHandler):
    """The three endpoints the client uses, as Confluent's REST API answers them."""

    subjects: ClassVar[dict[str, list[int]]] = {}
    schemas: ClassVar[list[str]] = []
    calls: ClassVar[list[str]] = []

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.calls.append(f"POST {self.path}")
        match = re.fullmatch(r"/subjects/([^/]+)/versions", self.path)
        if match is None:
            self._reply(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
            return
        schema = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["schema"]
        if schema not in self.schemas:
            self.schemas.append(schema)
        schema_id = self.schemas.index(schema) + 1
        self.subjects.setdefault(match.group(1), []).append(schema_id)
        self._reply(200, {"id": schema_id})

    def do_GET(self) -> None:
        self.calls.append(f"GET {self.path}")
        match = re.fullmatch(r"/schemas/ids/(\d+)", self.path)
        if match is None or not 0 < int(match.group(1)) <= len(self.schemas):
            self._reply(404, {"error_code": 40403, "message": "Schema not found"})
            return
        self._reply(200, {"schema": self.schemas[int(match.group(1)) - 1]})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    _FakeRegistry.subjects, _FakeRegistry.schemas, _FakeRegistry.calls = {}, [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_frame_is_magic_zero_and_big_endian_schema_id() -> None:
    assert frame(258, b"body") == b"\x00\x00\x00\x01\x02body"
    assert unframe(b"\x00\x00\x00\x01\x02body") == (258, b"body")
    with pytest.raises(SchemaError, match="not a Schema Registry framed message"):
        unframe(b"\xc3\x01abc")
    with pytest.raises(SchemaError, match="does not fit"):
        frame(2**31, b"")


def test_encoder_registers_once_and_decoder_fetches_by_id(registry_url: str) -> None:
    event = entity_change(1, "a", "b", ["c"], 7)
    encoder = RegistryEncoder(SchemaRegistryClient(registry_url), "t.caxton.memory.entities")

    first, second = encoder.encode(ENTITY_CHANGE, event), encoder.encode(ENTITY_CHANGE, event)

    assert first == second and first[0] == 0 and unframe(first)[0] == 1
    assert list(_FakeRegistry.subjects) == ["t.caxton.memory.entities-value"]
    assert _FakeRegistry.calls == ["POST /subjects/t.caxton.memory.entities-value/versions"]  # cached
    decoder = RegistryDecoder(SchemaRegistryClient(registry_url))
    assert decoder.decode(first) == (ENTITY_CHANGE, event)
    assert decoder.decode(second) == (ENTITY_CHANGE, event)
    assert _FakeRegistry.calls.count("GET /schemas/ids/1") == 1


def test_decoder_resolves_an_older_registered_writer_schema(registry_url: str) -> None:
    data, event = _v1_entity_change()
    old = next(c for c in history().values() if c.name == ENTITY_CHANGE)
    client = SchemaRegistryClient(registry_url)
    schema_id = client.register("x-value", to_parsing_canonical_form(old.schema))

    name, record = RegistryDecoder(client).decode(frame(schema_id, data[10:]))

    assert name == ENTITY_CHANGE and record["after"] == {**event["after"], "extra": None}


def test_unknown_id_and_unreachable_registry_are_named_errors(registry_url: str) -> None:
    with pytest.raises(RegistryError, match="HTTP 404"):
        RegistryDecoder(SchemaRegistryClient(registry_url)).decode(frame(99, b""))
    with pytest.raises(RegistryError, match="unreachable"):
        SchemaRegistryClient("http://127.0.0.1:9", timeout_s=1).schema(1)


def test_foreign_schema_id_is_refused(registry_url: str) -> None:
    client = SchemaRegistryClient(registry_url)
    schema_id = client.register("other-value", '{"type":"record","name":"Foreign","fields":[]}')
    with pytest.raises(SchemaError, match="Foreign, not a change event"):
        RegistryDecoder(client).decode(frame(schema_id, b""))
