"""Kafka messages to the runner's Events: single-object Avro, or Confluent framing through a Schema
Registry. A value that does not decode becomes an event without a record; its reason waits in
``undecodable`` until the runner dead-letters it (the bytes themselves are the proof)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message

from replicator.errors import SchemaError
from replicator.events import headers
from replicator.events.avro import decode_any, decode_key
from replicator.events.registry import RegistryDecoder, RegistryError, SchemaRegistryClient
from replicator.sinks.batch import Event
from replicator.sinks.runner_settings import SinkRunnerSettings

log = logging.getLogger("replicator.sink")


class EventDecoder:
    """Not thread-safe (the runner's thread). ``stopping`` cuts a registry wait short."""

    def __init__(self, settings: SinkRunnerSettings, stopping: Callable[[], bool], clock: Callable[[], float]) -> None:
        self.settings = settings
        self._stopping = stopping
        self._clock = clock
        #: (topic, partition, offset) -> why it did not decode, until dead-lettered.
        self.undecodable: dict[tuple[str, int, int], str] = {}
        self._registry = (
            None
            if settings.schema_registry is None
            else RegistryDecoder(SchemaRegistryClient(settings.schema_registry))
        )

    def decode(self, msg: Message) -> Event:
        """The message as an Event (a tombstone has no record; so has an undecodable value, whose
        reason is kept in ``undecodable``). Raises RegistryError when the registry stays unreachable."""
        topic, partition, offset = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
        raw_key, raw_value = msg.key(), msg.value()
        hdrs = headers.parse(msg.headers())
        try:
            key = None if raw_key is None else decode_key(raw_key)
            if raw_value is None:  # a tombstone: a delete of its key at the header's seq
                return Event(topic, partition, offset, key, None, None, raw_key, raw_value, hdrs)
            schema, record = self._value(raw_value)
        except SchemaError as exc:
            self.undecodable[(topic, partition, offset)] = f"undecodable: {exc.message}"
            return Event(topic, partition, offset, None, None, None, raw_key, raw_value)
        return Event(topic, partition, offset, key, schema, record, raw_key, raw_value, hdrs)

    def _value(self, raw: bytes) -> tuple[str, dict[str, Any]]:
        """Single-object encoding, or Confluent framing (magic byte 0) through the Schema Registry.
        Raises SchemaError (dead-lettered) or RegistryError (unreachable for a minute)."""
        if raw[:1] == b"\x00":
            if self._registry is None:
                raise SchemaError(
                    "the message is Confluent-framed (a Schema Registry id) but this sink has no --schema-registry",
                    hint="run the sink with the registry the source uses, then replay the dead-lettered messages",
                )
            delay = self.settings.backoff_initial_s
            deadline = self._clock() + 60.0
            while True:  # the registry is a server: unreachable is transient, not a poison event
                try:
                    return self._registry.decode(raw)
                except RegistryError as exc:
                    if self._clock() > deadline or self._stopping():
                        raise
                    log.warning("schema registry unavailable; retrying", extra={"error": str(exc).splitlines()[0]})
                    time.sleep(delay)
                    delay = min(delay * 2, self.settings.backoff_max_s)
        return decode_any(raw)
