"""A source instance fenced by a newer one with the same transactional id (the same store and topic
prefix) stops, named: retrying would fence the newer instance back, and the two would take turns."""

from __future__ import annotations

import pytest

from replicator.source.convert import Message
from replicator.source.kafka import TransactionalPublisher, transactional_id
from replicator.source.store import SourceError
from replicator.testing.broker import FakeBroker
from replicator.transport.settings import KafkaSettings


def test_a_fenced_publisher_raises_source_error_naming_the_other_instance() -> None:
    broker = FakeBroker()
    broker.create_topic("p.entities", 1)
    broker.create_topic("p.source-positions", 1)
    kafka = KafkaSettings()
    txn = transactional_id("p", "store-1")
    old = TransactionalPublisher(kafka, txn, 30, producer_of=broker.producer)
    old.publish([Message("p.entities", b"k", b"v", [])], ("p.source-positions", b"store-1", b"{}"))
    TransactionalPublisher(kafka, txn, 30, producer_of=broker.producer)  # a second instance starts
    with pytest.raises(SourceError) as raised:
        old.publish([Message("p.entities", b"k", b"v2", [])], ("p.source-positions", b"store-1", b"{}"))
    assert "another source instance" in raised.value.message and txn in raised.value.message
    assert "one source per store" in raised.value.hint
