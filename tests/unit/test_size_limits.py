"""One size setting (issue 17, item 3): producer, topics, brokers (local stack and docker/) and
consumers all take their limits from ``max_message_bytes``, whose default carries the store contract's
10 MiB of observations twice (an update's before and after images) with room for the envelope."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from confluent_kafka import KafkaError, KafkaException

from replicator.errors import ConfigError
from replicator.source.settings import SourceSettings
from replicator.stack.kafka import server_properties
from replicator.stack.settings import StackSettings
from replicator.transport import kafka as transport_kafka
from replicator.transport.settings import (
    DEFAULT_MAX_MESSAGE_BYTES,
    FRAMING_BYTES,
    MAX_MESSAGE_BYTES_ENV,
    MIB,
    KafkaSettings,
    parse_size,
)

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"


def test_the_default_carries_10_mib_of_observations_twice_with_room_for_the_envelope() -> None:
    limit = KafkaSettings().event_limit
    assert limit >= 2 * 10 * MIB + 4 * MIB, "an update's before and after, plus names, metadata and envelope"


@pytest.mark.parametrize("setting", [DEFAULT_MAX_MESSAGE_BYTES, 5 * MIB])
def test_every_client_limit_derives_from_the_one_setting(setting: int) -> None:
    kafka = KafkaSettings(max_message_bytes=setting)
    producer, consumer = kafka.producer(), kafka.consumer("g")
    assert producer["message.max.bytes"] == setting
    assert int(producer["batch.size"]) <= setting
    assert kafka.topic_config() == {"max.message.bytes": str(setting)}
    assert consumer["max.partition.fetch.bytes"] == setting
    assert int(consumer["fetch.max.bytes"]) >= setting
    assert int(consumer["receive.message.max.bytes"]) >= int(consumer["fetch.max.bytes"]) + 512
    assert kafka.event_limit == setting - FRAMING_BYTES


def test_the_local_stack_broker_takes_the_same_setting(tmp_path: Path) -> None:
    props = server_properties(StackSettings(root=tmp_path, max_message_bytes=7 * MIB), 1, tmp_path / "data")
    lines = dict(line.split("=", 1) for line in props.splitlines())
    assert lines["message.max.bytes"] == str(7 * MIB)
    assert lines["replica.fetch.max.bytes"] == str(7 * MIB)


def test_the_stack_and_the_source_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(MAX_MESSAGE_BYTES_ENV, "12MiB")
    assert StackSettings(root=tmp_path).max_message_bytes == 12 * MIB
    assert KafkaSettings.from_env().max_message_bytes == 12 * MIB
    settings = SourceSettings.load({"db": "x.db"}, env={MAX_MESSAGE_BYTES_ENV: "12MiB"})
    assert settings.kafka().max_message_bytes == 12 * MIB


def test_compose_gives_the_broker_and_every_replicator_service_the_same_variable() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    one = f"${{{MAX_MESSAGE_BYTES_ENV}:-{DEFAULT_MAX_MESSAGE_BYTES}}}"
    assert services["kafka"]["environment"]["KAFKA_MESSAGE_MAX_BYTES"] == one
    assert services["kafka"]["environment"]["KAFKA_REPLICA_FETCH_MAX_BYTES"] == one
    for name in ("replicator-source", "replicator-sink-neo4j", "replicator-sink-qdrant"):
        assert services[name]["environment"][MAX_MESSAGE_BYTES_ENV] == one, name


@pytest.mark.parametrize(
    ("text", "size"), [("33554432", 32 * MIB), ("32MiB", 32 * MIB), ("32m", 32 * MIB), ("10MB", 10_000_000)]
)
def test_sizes_parse_with_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "big", "-1", "1.5MiB"])
def test_a_bad_size_is_named(bad: str) -> None:
    with pytest.raises(ConfigError, match="not a size"):
        parse_size(bad)


@pytest.mark.parametrize("setting", [1024, 200 * MIB])
def test_a_setting_out_of_range_is_refused_with_the_range(setting: int) -> None:
    with pytest.raises(ConfigError, match="out of range") as info:
        KafkaSettings(max_message_bytes=setting)
    assert "48MiB" in info.value.hint


class _FakeAdmin:
    """Answers describe_configs as a broker that has not yet applied another client's CreateTopics:
    UNKNOWN_TOPIC_OR_PART ``unknown_for`` times, then the topic with a 1 MB limit."""

    def __init__(self, *_args: object, unknown_for: int = 2) -> None:
        self.unknown_for = unknown_for
        self.altered: list[str] = []

    def describe_configs(self, resources: list[Any], **_kw: object) -> dict[Any, Future[Any]]:
        future: Future[Any] = Future()
        if self.unknown_for > 0:
            self.unknown_for -= 1
            future.set_exception(KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)))
        else:
            future.set_result({"max.message.bytes": SimpleNamespace(value="1048588")})
        return dict.fromkeys(resources, future)

    def incremental_alter_configs(self, resources: list[Any]) -> dict[Any, Future[Any]]:
        self.altered.extend(r.name for r in resources)
        future: Future[Any] = Future()
        future.set_result(None)
        return dict.fromkeys(resources, future)


def test_a_topic_just_created_by_another_client_is_waited_for_then_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sinks start at once and both create the dead-letter topic: the second must not fail because the
    broker does not describe the first one's topic yet (seen: a sink exited at start)."""
    admin = _FakeAdmin()
    monkeypatch.setattr(transport_kafka, "AdminClient", lambda *_a, **_k: admin)
    transport_kafka.ensure_message_limit(KafkaSettings(timeout_s=5), ["p.dlq"])
    assert admin.altered == ["p.dlq"]


class _LaggingMetadata(_FakeAdmin):
    """A three-broker cluster whose metadata shows a topic made a moment ago without its partitions at
    first (seen on the real three-broker stack), and whose limits are already right."""

    def __init__(self, name: str) -> None:
        super().__init__(unknown_for=0)
        self.name, self.lists = name, 0

    def list_topics(self, **_kw: object) -> Any:
        self.lists += 1
        partitions = {} if self.lists <= 2 else {i: SimpleNamespace(replicas=[1]) for i in range(3)}
        topic = SimpleNamespace(partitions=partitions, error=None)
        return SimpleNamespace(brokers={1: None, 2: None, 3: None}, topics={self.name: topic})

    def describe_configs(self, resources: list[Any], **_kw: object) -> dict[Any, Future[Any]]:
        future: Future[Any] = Future()
        future.set_result({"max.message.bytes": SimpleNamespace(value=str(64 * MIB))})
        return dict.fromkeys(resources, future)


def test_a_topic_with_fewer_replicas_is_reported_even_while_its_metadata_lags(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = _LaggingMetadata("p.entities")
    monkeypatch.setattr(transport_kafka, "AdminClient", lambda *_a, **_k: admin)
    ensured = transport_kafka.ensure_topics(KafkaSettings(timeout_s=5), {"p.entities": 3})
    assert ensured.created == () and ensured.fewer_replicas == {"p.entities": 1}
