"""How lag, cutover and rollback reach the sinks: addresses, labels, secrets, and refusing an endpoint
that answers for another sink or another store. The sink's endpoint is a real EndpointServer here,
serving documents as the Qdrant sink does; the real sink is exercised by the integration tests."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from replicator.cutover.options import TargetOptions, target_options
from replicator.cutover.targets import QdrantTarget
from replicator.errors import ConfigError
from replicator.observe.endpoint import EndpointServer
from replicator.position import Heartbeat, PartitionKey, SinkPosition
from replicator.secrets import read_secret
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.neo4j.reader import GraphReader
from replicator.sinks.qdrant.points import vector_from_text, vector_text
from replicator.sinks.qdrant.reader import SinkEndpointReader
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.validation.errors import MigrateError


def _opts(**changes: object) -> TargetOptions:
    values: dict[str, object] = {
        "bootstrap_servers": "127.0.0.1:9092", "topic_prefix": "caxton.memory", "neo4j": Neo4jSettings(),
        "neo4j_sink": "neo4j", "neo4j_group": "g-neo4j", "entity_label": "Entity",
        "position_label": "ReplicatorPosition", "qdrant": QdrantSettings(path=Path("q")), "qdrant_api_key": None,
        "collection": "caxton_embeddings", "qdrant_sink": "qdrant-a", "qdrant_group": "g-qdrant",
    }  # fmt: skip
    values.update(changes)
    return TargetOptions(**values)  # type: ignore[arg-type]


def _position(sink: str, seq: int) -> dict[str, object]:
    position = SinkPosition(sink, {}, {PartitionKey("t", 0): Heartbeat(seq, 1)}, {"t": 1}, seq, 1)
    result: dict[str, object] = json.loads(position.to_json())
    return result


class FakeSink:
    """What a Qdrant sink's endpoint answers (``doc`` may be changed by a test)."""

    def __init__(self, sink: str = "qdrant-a", store_id: str | None = "store-1") -> None:
        self.doc: dict[str, object] = {"sink": sink, "store_id": store_id, "position": _position(sink, 9),
                                       "destination": {"entities": 2}}  # fmt: skip
        self.points = [
            {"id": 1, "payload": {"name": "alice", "entity_type": "person", "observations": ["a"], "_seq": 3,
                                  "embedding_model": "all-MiniLM-L6-v2"}, "vector": vector_text([0.5] * 4)},
            {"id": 2, "payload": {"name": "bob", "entity_type": "person", "observations": []}, "vector": None},
        ]  # fmt: skip
        routes = {"/position": lambda: (200, json.dumps(self.doc).encode(), "application/json")}
        pages = {"/points": self._page}
        self.server = EndpointServer(routes, 0, query_routes=pages)

    def _page(self, params: Mapping[str, str]) -> tuple[int, bytes, str]:
        # Paged as Qdrant's scroll: one point a page, ``offset`` the id it starts at.
        rest = [p for p in self.points if int(str(p["id"])) >= int(params.get("offset", "0"))]
        doc = {**{k: self.doc[k] for k in ("sink", "store_id")}, "points": rest[:1],
               "next": rest[1]["id"] if len(rest) > 1 else None}  # fmt: skip
        return 200, json.dumps(doc).encode(), "application/json"


@pytest.fixture
def sink() -> Iterator[FakeSink]:
    fake = FakeSink()
    yield fake
    fake.server.close()


def test_qdrant_endpoint_may_be_given_as_host_port(sink: FakeSink) -> None:
    opts = _opts(qdrant_endpoint=f"127.0.0.1:{sink.server.port}")
    assert opts.qdrant_endpoint == f"http://127.0.0.1:{sink.server.port}"
    position = QdrantTarget(opts, "store-1").position()
    watermark = position.watermark() if position else None
    assert watermark is not None and watermark.seq == 9
    assert _opts(qdrant_endpoint="http://10.0.0.5:9402/").qdrant_endpoint == "http://10.0.0.5:9402"


@pytest.mark.parametrize("value", ["9402", "ftp://h:1", "http://h", "h:port", "http://h:9402/position"])
def test_a_qdrant_endpoint_that_is_not_an_address_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="--qdrant-endpoint"):
        _opts(qdrant_endpoint=value)


def test_an_endpoint_answering_for_another_sink_is_refused(sink: FakeSink) -> None:
    sink.doc["sink"] = "qdrant-b"
    target = QdrantTarget(_opts(qdrant_endpoint=f"127.0.0.1:{sink.server.port}"), "store-1")
    with pytest.raises(MigrateError, match="answers for sink 'qdrant-b', not 'qdrant-a'"):
        target.position()
    reader = SinkEndpointReader(f"http://127.0.0.1:{sink.server.port}", "qdrant-a", "store-1")
    with pytest.raises(MigrateError, match="answers for sink 'qdrant-b'"):
        reader.counts()  # rollback's full comparison reads /points: refused the same way


def test_an_endpoint_applying_another_store_is_refused(sink: FakeSink) -> None:
    sink.doc["store_id"] = "store-2"
    target = QdrantTarget(_opts(qdrant_endpoint=f"127.0.0.1:{sink.server.port}"), "store-1")
    with pytest.raises(MigrateError, match="events of store store-2, not of this store"):
        target.position()


def test_a_sink_that_cannot_name_its_store_yet_has_no_position(sink: FakeSink) -> None:
    sink.doc["store_id"] = None  # restarted, no event applied since: it might be anyone's
    assert QdrantTarget(_opts(qdrant_endpoint=f"127.0.0.1:{sink.server.port}"), "store-1").position() is None


def test_the_endpoint_reader_reads_every_point_with_payload_and_vector(sink: FakeSink) -> None:
    reader = SinkEndpointReader(f"http://127.0.0.1:{sink.server.port}", "qdrant-a", "store-1")
    assert reader.counts() == {"points": 2}
    assert reader.keys().entities == frozenset({1, 2})
    snap = reader.read([1, 2, 3])
    assert snap.entities[1].name == "alice" and snap.entities[2].observations == ()
    assert snap.embeddings[1].vector == (0.5, 0.5, 0.5, 0.5)
    assert snap.embeddings[1].model_version == "all-MiniLM-L6-v2"
    assert 2 not in snap.embeddings  # no vector: compare_embeddings reports it missing


def test_vectors_cross_the_endpoint_exactly() -> None:
    vector = [0.1, -0.25, 3.0e-8, 1.0]
    decoded = vector_from_text(vector_text(vector))
    assert decoded is not None and [float(f"{x:.7g}") for x in decoded] == [0.1, -0.25, 3.0e-8, 1.0]
    assert vector_text({"only": vector}) == vector_text(vector)
    assert vector_text(None) is None and vector_from_text(None) is None


@pytest.mark.parametrize("label", ["Entity` DETACH DELETE n //", "a b", "", "1st", "Pos`ition"])
@pytest.mark.parametrize("field", ["entity_label", "position_label"])
def test_labels_that_are_not_plain_identifiers_are_refused(field: str, label: str) -> None:
    with pytest.raises(ConfigError, match="not a plain identifier"):
        _opts(**{field: label})


def test_the_readers_refuse_a_label_before_connecting() -> None:
    with pytest.raises(ConfigError, match="not a plain identifier"):
        GraphReader.connect(Neo4jSettings(uri="bolt://127.0.0.1:1"), GraphModel(entity_label="x`) DETACH DELETE n //"))


def test_no_client_has_a_built_in_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLICATOR_NEO4J_PASSWORD", raising=False)
    monkeypatch.delenv("REPLICATOR_NEO4J_PASSWORD_FILE", raising=False)
    assert Neo4jSettings().password is None
    assert Neo4jSettings.from_env().password is None


def test_passwords_come_from_the_environment_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "neo4j.password"
    secret.write_text("from-a-file\n")
    monkeypatch.delenv("REPLICATOR_NEO4J_PASSWORD", raising=False)
    monkeypatch.setenv("REPLICATOR_NEO4J_PASSWORD_FILE", str(secret))
    assert Neo4jSettings.from_env().password == "from-a-file"

    seen: list[TargetOptions] = []

    @click.command()
    @target_options
    def command(opts: TargetOptions) -> None:
        seen.append(opts)

    result = CliRunner().invoke(command, ["--neo4j-password-file", str(secret)], env={})
    assert result.exit_code == 0, result.output
    assert seen[0].neo4j.password == "from-a-file"
    monkeypatch.delenv("REPLICATOR_NEO4J_PASSWORD_FILE")
    result = CliRunner().invoke(command, [], env={"REPLICATOR_NEO4J_PASSWORD": "from-env"})
    assert result.exit_code == 0, result.output
    assert seen[-1].neo4j.password == "from-env"
    with pytest.raises(ConfigError, match="holds no Neo4j password"):
        (tmp_path / "empty").write_text("")
        read_secret(None, tmp_path / "empty", "Neo4j password")
    with pytest.raises(ConfigError, match="given twice"):
        read_secret("a", secret, "Neo4j password")
