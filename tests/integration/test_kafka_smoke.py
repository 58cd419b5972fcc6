"""Avro change events through the real broker (a fresh topic per test)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from replicator.events.avro import ENTITY_CHANGE, codec
from replicator.stack.smoke import SAMPLE_ENTITIES, kafka_roundtrip
from replicator.transport.kafka import TransportError, create_topic, delete_topic, publish, read
from replicator.transport.settings import KafkaSettings


@pytest.fixture
def topic(kafka: KafkaSettings) -> Iterator[str]:
    """A fresh topic name; the topic is deleted afterwards so a long-lived dev broker does not fill up."""
    name = f"test.{uuid.uuid4().hex[:12]}"
    yield name
    delete_topic(kafka, name)


def test_avro_entity_changes_round_trip_through_the_broker(kafka: KafkaSettings, topic: str) -> None:
    result = kafka_roundtrip(kafka, topic)

    assert len(result.sent) == len(SAMPLE_ENTITIES)
    assert result.received == result.sent  # every field survived encode -> broker -> decode
    assert result.keys == [str(r["after"]["id"]).encode() for r in result.sent]
    assert {r["op"] for r in result.received} == {"c"}


def test_consumer_group_resumes_after_committed_offsets(kafka: KafkaSettings, topic: str) -> None:
    create_topic(kafka, topic)
    entity = codec(ENTITY_CHANGE)
    first = kafka_roundtrip(kafka, topic)  # commits offsets for group <topic>.reader
    extra = dict(first.sent[0], op="u", before=first.sent[0]["after"])
    publish(kafka, topic, [(b"1", entity.encode(extra))])

    again = read(kafka, topic, group_id=f"{topic}.reader", expected=1)

    assert [entity.decode(m.value() or b"") for m in again] == [extra]


def test_foreign_bytes_on_the_topic_are_refused_with_a_named_error(kafka: KafkaSettings, topic: str) -> None:
    create_topic(kafka, topic)
    publish(kafka, topic, [(b"x", b'{"not": "avro"}')])
    [message] = read(kafka, topic, group_id=f"{topic}.reader", expected=1)

    with pytest.raises(Exception, match="not an Avro single-object message") as info:
        codec(ENTITY_CHANGE).decode(message.value() or b"")
    assert "dead-letter" in getattr(info.value, "hint", "")


def test_unreachable_broker_is_a_transport_error_naming_it() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bind, read it, close
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", timeout_s=2)

    with pytest.raises(TransportError, match=f"127.0.0.1:{port}"):
        create_topic(settings, "never")


def test_deleting_a_missing_topic_is_fine(kafka: KafkaSettings) -> None:
    name = f"test.{uuid.uuid4().hex[:12]}"
    create_topic(kafka, name)
    delete_topic(kafka, name)
    delete_topic(kafka, name)  # already gone: no error
