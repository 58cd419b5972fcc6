"""Change events built by hand as the source emits them, for tests and the bench: each record is
Avro-encoded with the real schema and decoded back with ``decode_any``, exactly as the runner would
hand it over. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from replicator.embedding import MODEL_NAME, entity_text
from replicator.events.avro import EMBEDDING_CHANGE, ENTITY_CHANGE, HEARTBEAT, Record, codec, decode_any, encode_key
from replicator.events.envelope import change_record, heartbeat_record, source_record
from replicator.events.headers import Parsed
from replicator.sinks.batch import Batch, Event
from replicator.transport.topics import DEFAULT_PREFIX, change_topic

T0 = 1_760_000_000_000
STORE_ID = "sample"  # the store every event built here comes from


def _source(table: str, seq: int) -> Record:
    return source_record(STORE_ID, table, seq, T0 + seq)


def entity_image(entity_id: int, name: str, entity_type: str = "concept", observations: Sequence[str] = (),
                 **fields: object) -> Record:  # fmt: skip
    """An Entity row; ``fields`` overrides confidence, strength, version, metadata, ..."""
    image: Record = {"id": entity_id, "name": name, "entity_type": entity_type, "observations": list(observations),
                     "confidence": 1.0, "strength": 1.0, "version": 1, "created_at": T0, "updated_at": T0,
                     "valid_from": None, "valid_to": None, "metadata": None, "extra": None}  # fmt: skip
    image.update(fields)
    return image


def entity_change(op: str, seq: int, image: Record) -> Record:
    before, after = (image, None) if op == "d" else (None, image)
    return change_record(op, before, after, _source("entities", seq), T0 + seq)


def embedding_change(seq: int, entity_id: int, vector: bytes, text: str | None, *, model: str = MODEL_NAME,
                     op: str = "c") -> Record:  # fmt: skip
    image = {"entity_id": entity_id, "vector": vector, "model_version": model, "created_at": T0 + seq,
             "text": text, "extra": None}  # fmt: skip
    before, after = (image, None) if op == "d" else (None, image)
    return change_record(op, before, after, _source("embeddings", seq), T0 + seq)


def text_of(image: Record) -> str:
    return entity_text(image["name"], image["entity_type"], image["observations"])


def to_event(topic: str, partition: int, offset: int, key: int, *, schema: str, record: Record) -> Event:
    """Encode with the schema, decode as the runner does."""
    raw_value = codec(schema).encode(record)
    name, decoded = decode_any(raw_value)
    raw_key = encode_key(key)
    return Event(topic, partition, offset, key, name, decoded, raw_key, raw_value)


class Stream:
    """Appends events to one entities and one embeddings partition with running offsets."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.entities = change_topic(prefix, "entities")
        self.embeddings = change_topic(prefix, "embeddings")
        self.offsets: dict[str, int] = {self.entities: 0, self.embeddings: 0}

    def _next(self, topic: str) -> int:
        offset = self.offsets[topic]
        self.offsets[topic] = offset + 1
        return offset

    def entity(self, op: str, seq: int, image: Record) -> Event:
        record = entity_change(op, seq, image)
        return to_event(self.entities, 0, self._next(self.entities), image["id"], schema=ENTITY_CHANGE, record=record)

    def embedding(self, seq: int, entity_id: int, vector: bytes, text: str | None, *, model: str = MODEL_NAME,
                  op: str = "c") -> Event:  # fmt: skip
        record = embedding_change(seq, entity_id, vector, text, model=model, op=op)
        return to_event(
            self.embeddings, 0, self._next(self.embeddings), entity_id, schema=EMBEDDING_CHANGE, record=record
        )

    def tombstone(self, seq: int | None, entity_id: int, topic: str | None = None) -> Event:
        """The null-valued record after a delete (all compaction leaves of the key): its seq in a header."""
        topic = topic or self.entities
        headers = Parsed(table=topic.rsplit(".", 1)[-1], seq=seq)
        return Event(topic, 0, self._next(topic), entity_id, None, None, encode_key(entity_id), None, headers)

    def heartbeat(self, topic: str, seq: int) -> Event:
        record = heartbeat_record(_source(topic.rsplit(".", 1)[-1], seq), T0 + seq)
        return to_event(topic, 0, self._next(topic), -1, schema=HEARTBEAT, record=record)

    def batch(self, events: Sequence[Event]) -> Batch:
        return Batch(list(events), {self.entities: 1, self.embeddings: 1})
