"""A stand-in source for sink tests and benches: a tiny in-memory store whose changes become events
exactly as design §2-§4 say (Debezium envelope, ``encode_key``, a tombstone after each delete,
heartbeats to every partition in the same Kafka transaction). The real source is built elsewhere;
this produces what it promises, so sinks can be tested before it exists.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from replicator.events import headers
from replicator.events.avro import ENTITY_CHANGE, HEARTBEAT, RELATION_CHANGE, codec, decode_any, encode_key
from replicator.events.envelope import change_record, heartbeat_record, source_record
from replicator.transport.kafka import create_topic
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import change_topic

Row = dict[str, Any]
Message = tuple[str, int | None, bytes, bytes | None]  # table, partition (None: by key), key, value


def _now() -> int:
    return int(time.time() * 1000)


@dataclass
class SimulatedStore:
    """Entities and relations with a changelog seq; every mutation returns its messages."""

    store_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    seq: int = 0
    entities: dict[int, Row] = field(default_factory=dict)
    relations: dict[int, Row] = field(default_factory=dict)
    _next_id: int = 0

    def _source(self, table: str, seq: int, snapshot: str = "false") -> Row:
        return source_record(self.store_id, table, seq, _now(), snapshot)

    def _change(self, table: str, op: str, before: Row | None, after: Row | None) -> list[Message]:
        self.seq += 1
        name = ENTITY_CHANGE if table == "entities" else RELATION_CHANGE
        row_id = int((after or before or {})["id"])
        value = codec(name).encode(change_record(op, before, after, self._source(table, self.seq), _now()))
        out: list[Message] = [(table, None, encode_key(row_id), value)]
        if op == "d":
            out.append((table, None, encode_key(row_id), None))  # tombstone: compaction drops the key
        return out

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def create_entity(
        self, name: str, entity_type: str = "thing", observations: list[str] | None = None
    ) -> tuple[int, list[Message]]:
        row_id = self.new_id()
        ts = _now()
        row = {"id": row_id, "name": name, "entity_type": entity_type, "observations": observations or [],
               "confidence": 1.0, "strength": 1.0, "version": 1, "created_at": ts, "updated_at": ts,
               "valid_from": None, "valid_to": None, "metadata": None, "extra": None}  # fmt: skip
        self.entities[row_id] = row
        return row_id, self._change("entities", "c", None, dict(row))

    def update_entity(self, row_id: int, **changes: Any) -> list[Message]:  # noqa: ANN401 - column values
        before = dict(self.entities[row_id])
        after = {**before, **changes, "updated_at": _now(), "version": before["version"] + 1}
        self.entities[row_id] = after
        return self._change("entities", "u", before, dict(after))

    def delete_entity(self, row_id: int) -> list[Message]:
        """Cascade like SQLite: the entity's relations are deleted first, each with its own seq."""
        out: list[Message] = []
        for rel_id in [
            r for r, rel in self.relations.items() if row_id in (rel["from_entity_id"], rel["to_entity_id"])
        ]:
            out += self.delete_relation(rel_id)
        before = self.entities.pop(row_id)
        return out + self._change("entities", "d", before, None)

    def create_relation(
        self, from_id: int, to_id: int, relation_type: str, strength: float = 1.0
    ) -> tuple[int, list[Message]]:
        row_id = self.new_id()
        ts = _now()
        row = {"id": row_id, "from_entity_id": from_id, "to_entity_id": to_id,
               "from_entity_name": self.entities[from_id]["name"], "to_entity_name": self.entities[to_id]["name"],
               "relation_type": relation_type, "strength": strength, "confidence": 1.0, "created_at": ts,
               "updated_at": ts, "valid_from": None, "valid_to": None, "metadata": None, "extra": None}  # fmt: skip
        self.relations[row_id] = row
        return row_id, self._change("relations", "c", None, dict(row))

    def update_relation(self, row_id: int, strength: float) -> list[Message]:
        before = dict(self.relations[row_id])
        after = {**before, "strength": strength, "updated_at": _now()}
        self.relations[row_id] = after
        return self._change("relations", "u", before, dict(after))

    def delete_relation(self, row_id: int) -> list[Message]:
        before = self.relations.pop(row_id)
        return self._change("relations", "d", before, None)

    def heartbeats(self, partitions: int, tables: tuple[str, ...] = ("entities", "relations")) -> list[Message]:
        """A heartbeat at the current seq for every partition of every table's topic."""
        out: list[Message] = []
        for table in tables:
            value = codec(HEARTBEAT).encode(heartbeat_record(self._source(table, self.seq), _now()))
            out += [(table, p, encode_key(-1), value) for p in range(partitions)]
        return out

    def expected_graph(self) -> tuple[dict[int, Row], dict[int, Row]]:
        """What a sink must end with: entity fields and relation endpoints/type/strength by id."""
        entities = {i: {"name": e["name"], "entity_type": e["entity_type"], "observations": e["observations"]}
                    for i, e in self.entities.items()}  # fmt: skip
        relations = {i: {"from": r["from_entity_id"], "to": r["to_entity_id"], "relation_type": r["relation_type"],
                         "strength": r["strength"]} for i, r in self.relations.items()}  # fmt: skip
        return entities, relations


class TransactionalPublisher:
    """Publishes messages of a prefix's topics in Kafka transactions (murmur2_random partitioning, as
    the source does). ``copies`` sends every message that many times (deliver-twice tests)."""

    def __init__(self, kafka: KafkaSettings, prefix: str, partitions: int = 3) -> None:
        self.prefix = prefix
        self.partitions = partitions
        for table in ("entities", "relations"):
            create_topic(kafka, change_topic(prefix, table), partitions)
        self._producer = Producer(
            {**kafka.producer(), "transactional.id": f"test-source-{uuid.uuid4().hex}", "partitioner": "murmur2_random"}
        )
        self._producer.init_transactions(kafka.timeout_s)
        self.timeout_s = kafka.timeout_s

    def publish(self, messages: list[Message], copies: int = 1) -> None:
        """One transaction with ``messages`` (each ``copies`` times, consecutively), with the headers
        the source puts on them (a tombstone's seq is its delete's). Blocks until committed."""
        self._producer.begin_transaction()
        seq = 0
        for table, partition, key, value in messages:
            if value is not None:
                _schema, record = decode_any(value)
                seq = int(record["source"]["seq"])
            hdrs: list[tuple[str, str | bytes | None]] = [
                *headers.make("heartbeat" if key == encode_key(-1) else table, seq)
            ]
            for _ in range(copies):
                topic = change_topic(self.prefix, table)
                if partition is None:
                    self._producer.produce(topic, key=key, value=value, headers=hdrs)
                else:
                    self._producer.produce(topic, key=key, value=value, partition=partition, headers=hdrs)
                self._producer.poll(0)
        self._producer.commit_transaction(self.timeout_s)

    def publish_raw(self, table: str, key: bytes | None, value: bytes | None) -> None:
        """A message no source would write (poison tests), in its own transaction."""
        self._producer.begin_transaction()
        self._producer.produce(change_topic(self.prefix, table), key=key, value=value)
        self._producer.commit_transaction(self.timeout_s)
