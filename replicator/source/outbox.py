"""What one transaction of the source carries, built apart from when it is sent: the events of
changelog rows and snapshot rows (a row that cannot go is parked instead, ``source/parking.py``), the
heartbeats, and the position record. Also the daemon's structured log line, ``event``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from replicator.source.coalesce import is_gone
from replicator.source.convert import (
    ChangelogRow,
    Conversion,
    Message,
    convert_change,
    convert_snapshot_row,
    heartbeat_messages,
    position_value,
)
from replicator.source.metrics import SourceMetrics
from replicator.source.parking import Parker, Taken, Verdict, judge, take
from replicator.source.settings import SourceSettings
from replicator.source.store import StoreIdentity, StoreReader
from replicator.transport.topics import positions_topic

log = logging.getLogger("replicator.source")


def event(level: int, name: str, **fields: object) -> None:
    """One structured log line: ``event=<name> key=value ...`` (values with spaces are quoted). The
    fields also ride on the record (``record.fields``), so the JSON format writes each value whole
    instead of parsing the text back."""
    parts = [f"event={name}"]
    for key, value in fields.items():
        text = str(value)
        parts.append(f"{key}={text!r}" if (" " in text or "=" in text or not text) else f"{key}={text}")
    log.log(level, " ".join(parts), extra={"fields": {"event": name, **fields}})


class Outbox:
    """Builds messages for one store. Not thread-safe (the daemon's loop); parks through ``reader``."""

    def __init__(
        self, settings: SourceSettings, identity: StoreIdentity, reader: StoreReader, metrics: SourceMetrics
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.reader = reader
        self.metrics = metrics
        self.limit = settings.kafka().event_limit

    def parker(self) -> Parker:
        s = self.settings
        return Parker(self.reader, self.metrics, self.limit, s.delete_busy_timeout_ms,
                      partial(event, logging.WARNING, "row_parked"))  # fmt: skip

    def snapshot_chunk(
        self, rows: Sequence[tuple[str, Any, Any]], read_seq: int, done: bool, ts_ms: int
    ) -> tuple[list[Message], list[str]]:
        """The ``op=r`` events of a snapshot chunk (the last row of the last chunk marked ``last``) and
        the table of each row published; a row that cannot go is parked. Blocks on the store."""
        s, messages, published = self.settings, [], []
        for i, (table, key, image) in enumerate(rows):
            convert = partial(
                convert_snapshot_row, table, image, prefix=s.topic_prefix, store_id=self.identity.store_id,
                read_seq=read_seq, last=done and i == len(rows) - 1, produced_ms=ts_ms,
            )  # fmt: skip
            verdict = judge(convert, self.limit, s.max_message_bytes)
            if verdict.conversion is None:
                self.parker().snapshot_row(table, self.identity.columns[table], key, read_seq, verdict)
                continue
            warn(verdict.conversion.warnings)
            messages.extend(verdict.conversion.messages)
            published.append(table)
        return messages, published

    def changes(self, rows: list[ChangelogRow], ts_ms: int) -> Taken:
        """The longest prefix of ``rows`` one transaction covers (published or parked), see ``take``;
        its warnings are the caller's to log (``warn``) once it publishes."""
        s = self.settings

        def decide(row: ChangelogRow) -> Verdict:
            if is_gone(row):  # covered without an event: its delete follows in the changelog
                return Verdict(Conversion(), 0, None)
            convert = partial(convert_change, row, prefix=s.topic_prefix, store_id=self.identity.store_id,
                              produced_ms=ts_ms)  # fmt: skip
            return judge(convert, self.limit, s.max_message_bytes)

        return take(rows, decide, self.parker().change, s.max_message_bytes)

    def heartbeats(self, seq: int, seen_ms: int, partitions: dict[str, int], snapshot_seq: int | None) -> list[Message]:
        return heartbeat_messages(prefix=self.settings.topic_prefix, store_id=self.identity.store_id, seq=seq,
                                  seen_ms=seen_ms, partitions=partitions, snapshot_seq=snapshot_seq)  # fmt: skip

    def position(
        self, seq: int, cursor: dict[str, Any] | None, ts_ms: int, snapshot_seq: int | None
    ) -> tuple[str, bytes, bytes]:
        """The position record ``(topic, key, value)`` committed with a transaction."""
        value = position_value(seq, cursor, ts_ms, snapshot_seq)
        return positions_topic(self.settings.topic_prefix), self.identity.store_id.encode(), value


def warn(warnings: list[str]) -> None:
    for text in warnings:
        event(logging.WARNING, "odd_row_carried", detail=text)
