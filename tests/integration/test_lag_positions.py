"""Lag reads the source's positions topic as the source does: read_committed, to the end, through the
source's own reader, under the topic name derived from the prefix in one place.

Regression test: lag's own reader looked only at the last 200 records of the topic, so an aborted
transaction of more positions than that hid every committed one (lag showed no published seq).
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from confluent_kafka import Producer

from replicator.observe import lag
from replicator.source.convert import position_value
from replicator.transport import kafka as transport
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import positions_topic

STORE_ID = "lag-positions-store"


def _positions(kafka: KafkaSettings, prefix: str, *, aborted: int) -> None:
    """The positions topic as the source writes it: a committed position at seq 5, then ``aborted``
    positions of one transaction that aborts (seqs from 1000)."""
    topic = positions_topic(prefix)
    transport.ensure_topics(kafka, {topic: 1}, {"cleanup.policy": "compact"})
    producer = Producer({**kafka.producer(), "transactional.id": f"test-{prefix}"})
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce(topic, key=STORE_ID.encode(), value=position_value(5, None, 1), partition=0)
    producer.commit_transaction(10)
    producer.begin_transaction()
    for i in range(aborted):
        producer.produce(topic, key=STORE_ID.encode(), value=position_value(1000 + i, None, 1), partition=0)
    producer.flush(10)
    producer.abort_transaction(10)


@pytest.mark.parametrize("aborted", [1, 250])
def test_lag_reports_the_last_committed_position_never_an_aborted_one(kafka: KafkaSettings, aborted: int) -> None:
    prefix = f"owners{uuid.uuid4().hex[:10]}"
    _positions(kafka, prefix, aborted=aborted)
    assert lag.published_seq(kafka, prefix, STORE_ID) == 5


def test_lag_reads_the_positions_while_a_live_source_commits_transaction_after_transaction(
    kafka: KafkaSettings,
) -> None:
    """A live source opens its next transaction as soon as one commits, so a read_committed consumer
    may never see the topic's end (seen: the demo's first lag sample failed after 30 s with 'did not
    deliver ... to its end'). Lag reads what the topic held when it asked."""
    prefix = f"owners{uuid.uuid4().hex[:10]}"
    _positions(kafka, prefix, aborted=0)
    topic = positions_topic(prefix)
    stop, committed = threading.Event(), [5]

    def live_source() -> None:
        producer = Producer({**kafka.producer(), "transactional.id": f"test-live-{prefix}"})
        producer.init_transactions(10)
        seq = 5
        while not stop.is_set():
            seq += 1
            producer.begin_transaction()
            producer.produce(topic, key=STORE_ID.encode(), value=position_value(seq, None, 1), partition=0)
            producer.commit_transaction(10)
            committed.append(seq)
        producer.flush(10)

    source = threading.Thread(target=live_source)
    source.start()
    try:
        while len(committed) < 20:
            time.sleep(0.05)
        first = committed[-1]
        seq = lag.published_seq(kafka, prefix, STORE_ID)
        assert seq is not None and first <= seq <= committed[-1]
    finally:
        stop.set()
        source.join()
