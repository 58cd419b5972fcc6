"""Client settings for Kafka, Neo4j and Qdrant: validation and librdkafka mapping."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from replicator.errors import ConfigError, Kind, kind_of
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.transport.kafka import KafkaRefused, TransportError, retrying
from replicator.transport.settings import KafkaSettings, Replication, replication_for


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


@pytest.mark.parametrize(("brokers", "factor", "min_insync"), [(1, 1, 1), (2, 2, 2), (3, 3, 2), (5, 3, 2)])
def test_default_replication_follows_the_broker_count(brokers: int, factor: int, min_insync: int) -> None:
    assert replication_for(brokers) == Replication(factor, min_insync)
    assert KafkaSettings().replication(brokers) == Replication(factor, min_insync)


def test_explicit_replication_wins_and_min_insync_follows_it() -> None:
    assert KafkaSettings(replication_factor=2).replication(5) == Replication(2, 2)
    assert KafkaSettings(replication_factor=3, min_insync_replicas=1).replication(3) == Replication(3, 1)
    assert KafkaSettings(min_insync_replicas=3).replication(4) == Replication(3, 3)


def test_a_replication_the_cluster_cannot_give_is_named() -> None:
    with pytest.raises(ConfigError, match=r"replication factor 3 needs 3 brokers; Kafka at 127\.0\.0\.1:9092 has 1 up"):
        KafkaSettings(replication_factor=3).replication(1)
    with pytest.raises(ConfigError, match=r"min\.insync\.replicas 2 exceeds the replication factor 1") as info:
        KafkaSettings(min_insync_replicas=2).replication(1)
    assert "REPLICATOR_KAFKA_MIN_INSYNC_REPLICAS" in info.value.hint
    with pytest.raises(ConfigError, match="no write could ever be acknowledged"):
        KafkaSettings(replication_factor=2, min_insync_replicas=3)
    with pytest.raises(ConfigError, match="replication factor 0 is out of range"):
        KafkaSettings(replication_factor=0)


def test_replication_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATOR_KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("REPLICATOR_KAFKA_MIN_INSYNC_REPLICAS", "2")
    assert KafkaSettings.from_env().replication(3) == Replication(3, 2)
    monkeypatch.setenv("REPLICATOR_KAFKA_REPLICATION_FACTOR", "three")
    with pytest.raises(ConfigError, match="REPLICATOR_KAFKA_REPLICATION_FACTOR='three' is not a number"):
        KafkaSettings.from_env()


def _kafka_error(code: int) -> KafkaException:
    return KafkaException(KafkaError(code))


def test_a_coordinator_still_loading_is_retried_within_a_bound() -> None:
    """The README's demo failed at step 4/6 on a fresh broker: NOT_COORDINATOR from the lag sampler."""
    settings = KafkaSettings(timeout_s=5)
    answers: list[object] = [
        _kafka_error(KafkaError.COORDINATOR_LOAD_IN_PROGRESS), _kafka_error(KafkaError.NOT_COORDINATOR), "offsets",
    ]  # fmt: skip

    def call() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retrying(settings, "read offsets", call) == "offsets"
    assert answers == []


def test_a_transient_error_that_lasts_becomes_a_named_error_at_the_bound() -> None:
    settings = KafkaSettings(timeout_s=0.5)
    calls: list[float] = []

    def call() -> None:
        calls.append(time.monotonic())
        raise _kafka_error(KafkaError.NOT_COORDINATOR)

    with pytest.raises(TransportError, match=r"could not read offsets yet.*NOT_COORDINATOR") as caught:
        retrying(settings, "read offsets", call)
    assert len(calls) >= 2 and calls[-1] - calls[0] <= 0.6
    assert kind_of(caught.value) is Kind.RETRYABLE and caught.value.hint


def test_an_unreachable_broker_is_named_at_once_and_a_refusal_is_fatal() -> None:
    settings = KafkaSettings(bootstrap_servers="10.9.9.9:9092")
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise _kafka_error(KafkaError._TRANSPORT)

    with pytest.raises(TransportError, match=r"Kafka at 10\.9\.9\.9:9092 did not read offsets"):
        retrying(settings, "read offsets", down)
    assert calls == 1  # waiting again would only repeat the client's own timeout

    def refused() -> None:
        raise _kafka_error(KafkaError.GROUP_AUTHORIZATION_FAILED)

    with pytest.raises(KafkaRefused, match="refused to read offsets") as caught:
        retrying(settings, "read offsets", refused)
    assert kind_of(caught.value) is Kind.FATAL


def test_a_sink_creates_its_dead_letter_topic_with_the_explicit_replication(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker/compose.brokers3.yaml gives every service the replication variables: a sink must not
    decide its dead-letter topic's replication from the brokers up at that moment instead."""
    from replicator.sinks.cli import runner_settings  # noqa: PLC0415 - the CLI module, only here

    monkeypatch.setenv("REPLICATOR_KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("REPLICATOR_KAFKA_MIN_INSYNC_REPLICAS", "2")
    opts = {
        "group": "g", "bootstrap_servers": "127.0.0.1:9092", "max_message_bytes": "32MiB", "topic_prefix": "p",
        "sink_name": "", "batch_size": 10, "batch_age_ms": 10, "session_timeout_ms": 10_000, "metrics_port": None,
        "metrics_host": "127.0.0.1", "schema_registry": None, "recheck_s": 30.0,
    }  # fmt: skip
    kafka = runner_settings(opts, ("entities",)).kafka
    assert (kafka.replication_factor, kafka.min_insync_replicas) == (3, 2)
