"""Client settings for Kafka, Neo4j and Qdrant: validation and librdkafka mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicator.errors import ConfigError
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.transport.settings import KafkaSettings


def test_producer_is_idempotent_so_per_key_order_survives_retries() -> None:
    conf = KafkaSettings().producer()
    assert conf["enable.idempotence"] is True
    assert conf["acks"] == "all"


def test_consumer_never_auto_commits() -> None:
    conf = KafkaSettings().consumer("g")
    assert conf["enable.auto.commit"] is False
    assert conf["group.id"] == "g"


@pytest.mark.parametrize("bootstrap", ["", "localhost", "host:port", "a:1,b"])
def test_bad_bootstrap_is_refused(bootstrap: str) -> None:
    with pytest.raises(ConfigError):
        KafkaSettings(bootstrap_servers=bootstrap)


def test_env_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATOR_KAFKA_BOOTSTRAP", "10.0.0.1:9092,10.0.0.2:9092")
    monkeypatch.setenv("REPLICATOR_NEO4J_URI", "neo4j://graph:7687")
    monkeypatch.setenv("REPLICATOR_NEO4J_PASSWORD", "")
    assert KafkaSettings.from_env().bootstrap_servers == "10.0.0.1:9092,10.0.0.2:9092"
    neo = Neo4jSettings.from_env()
    assert neo.uri == "neo4j://graph:7687"
    assert neo.auth() is None


def test_neo4j_uri_needs_a_bolt_scheme() -> None:
    with pytest.raises(ConfigError, match="no Bolt scheme"):
        Neo4jSettings(uri="http://localhost:7474")


def test_qdrant_needs_exactly_one_of_url_and_path() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        QdrantSettings()
    with pytest.raises(ConfigError, match="exactly one"):
        QdrantSettings(url="http://q:6333", path=Path("x"))
    assert QdrantSettings(url="http://q:6333").collection == "caxton_embeddings"
