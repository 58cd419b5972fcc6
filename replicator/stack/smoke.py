"""The smoke path: one real round trip through each server the pipeline uses.

Until the capture and sinks exist this is the main job's end-to-end check of the stack: an Avro
entity change event through Kafka, a node written and read over Bolt, and the packaged model's
vectors upserted into and searched in Qdrant. Each step is a function the integration tests run too.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from replicator.embedding import DIMENSIONS, embed, entity_text, load_model
from replicator.events.avro import ENTITY_CHANGE, Record, codec
from replicator.events.envelope import change_record, source_record
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.transport.settings import KafkaSettings

SAMPLE_ENTITIES: list[tuple[str, str, list[str]]] = [
    ("Ada Lovelace", "person", ["wrote the first program", "worked on the Analytical Engine"]),
    ("PostgreSQL", "database", ["relational database", "supports logical replication"]),
    (
        "Retry with backoff",
        "pattern",
        ["handles transient network errors", "waits longer after each failure"],
    ),
]


def entity_change(entity_id: int, name: str, entity_type: str, observations: list[str], seq: int) -> Record:
    """An ``op=c`` EntityChange as the capture will emit it (a fixed clock keeps it reproducible)."""
    now = 1_760_000_000_000 + seq
    after = {
        "id": entity_id, "name": name, "entity_type": entity_type, "observations": observations,
        "confidence": 0.9, "strength": 1.0, "version": 1, "created_at": now, "updated_at": now,
        "valid_from": None, "valid_to": None, "metadata": '{"source": "smoke"}', "extra": None,
    }  # fmt: skip
    return change_record("c", None, after, source_record("smoke", "entities", seq, now), now)


@dataclass(frozen=True)
class KafkaRoundTrip:
    topic: str
    sent: list[Record]
    received: list[Record]
    keys: list[bytes]
    partitions: list[int]


def kafka_roundtrip(settings: KafkaSettings, topic: str | None = None, cleanup: bool = False) -> KafkaRoundTrip:
    """Publish Avro EntityChange events to a fresh topic and read them back (then delete the topic if
    ``cleanup``). Raises TransportError."""
    from replicator.transport.kafka import create_topic, delete_topic, publish, read  # noqa: PLC0415 - clients load on use

    topic = topic or f"replicator.stack.smoke.{uuid.uuid4().hex[:12]}"
    create_topic(settings, topic)
    entity = codec(ENTITY_CHANGE)
    sent = [entity_change(i, n, t, o, seq=i) for i, (n, t, o) in enumerate(SAMPLE_ENTITIES, start=1)]
    publish(settings, topic, [(str(r["after"]["id"]).encode(), entity.encode(r)) for r in sent])
    messages = read(settings, topic, group_id=f"{topic}.reader", expected=len(sent))
    if cleanup:
        delete_topic(settings, topic)
    return KafkaRoundTrip(
        topic=topic,
        sent=sent,
        received=[entity.decode(m.value() or b"") for m in messages],
        keys=[m.key() or b"" for m in messages],
        partitions=[m.partition() or 0 for m in messages],
    )


def neo4j_roundtrip(settings: Neo4jSettings, label: str = "SmokeCheck") -> dict[str, Any]:
    """MERGE a node with a unique key over Bolt, read it back in a new session, delete it."""
    import neo4j  # noqa: PLC0415 - clients load on use

    key = uuid.uuid4().hex
    with neo4j.GraphDatabase.driver(settings.uri, auth=settings.auth(), notifications_min_severity="OFF") as driver:
        driver.execute_query(
            f"MERGE (n:{label} {{key: $key}}) SET n.observations = $obs, n.confidence = 0.9",
            key=key, obs=["written by replicator smoke"], database_=settings.database,
        )  # fmt: skip
        records, _, _ = driver.execute_query(
            f"MATCH (n:{label} {{key: $key}}) RETURN properties(n) AS props",
            key=key,
            database_=settings.database,
        )
        driver.execute_query(f"MATCH (n:{label} {{key: $key}}) DELETE n", key=key, database_=settings.database)
    if len(records) != 1:
        return {}
    props: dict[str, Any] = records[0]["props"]
    return props


@dataclass(frozen=True)
class QdrantRoundTrip:
    query: str
    hits: list[tuple[str, float]]  # (entity name, cosine score), best first
    vector_norms: list[float]


def qdrant_roundtrip(settings: QdrantSettings, query: str = "which database can replicate changes?") -> QdrantRoundTrip:
    """Embed the sample entities with the packaged model, upsert them, and search with ``query``."""
    from qdrant_client import models  # noqa: PLC0415 - clients load on use

    from replicator.sinks.qdrant.connection import new_client  # noqa: PLC0415

    model = load_model()
    texts = [entity_text(n, t, o) for n, t, o in SAMPLE_ENTITIES]
    vectors = embed(model, texts)
    client = new_client(settings)
    try:
        if client.collection_exists(settings.collection):
            client.delete_collection(settings.collection)
        client.create_collection(
            settings.collection,
            vectors_config=models.VectorParams(size=DIMENSIONS, distance=models.Distance.COSINE),
        )
        client.upsert(
            settings.collection,
            points=[
                models.PointStruct(id=i, vector=v, payload={"name": n, "entity_type": t})
                for i, ((n, t, _), v) in enumerate(zip(SAMPLE_ENTITIES, vectors, strict=True), start=1)
            ],
            wait=True,
        )
        result = client.query_points(settings.collection, query=embed(model, [query])[0], limit=len(texts))
    finally:
        client.close()
    hits = [(str((p.payload or {}).get("name")), float(p.score)) for p in result.points]
    norms = [sum(x * x for x in v) ** 0.5 for v in vectors]
    return QdrantRoundTrip(query=query, hits=hits, vector_norms=norms)


@click.command()
@click.option("--kafka", "bootstrap", default=KafkaSettings.from_env().bootstrap_servers, show_default=True,
              help="Kafka bootstrap servers (env REPLICATOR_KAFKA_BOOTSTRAP).")  # fmt: skip
@click.option("--qdrant-path", type=click.Path(file_okay=False, path_type=Path), default=Path(".stack/qdrant"),
              show_default=True, help="qdrant-client local-mode storage directory.")  # fmt: skip
def smoke(bootstrap: str, qdrant_path: Path) -> None:
    """One real round trip through Kafka, Neo4j and Qdrant (local mode) with the packaged model."""
    t0 = time.monotonic()
    k = kafka_roundtrip(KafkaSettings(bootstrap_servers=bootstrap), cleanup=True)
    click.echo(f"kafka : {len(k.received)}/{len(k.sent)} Avro EntityChange events back from {k.topic} "
               f"({time.monotonic() - t0:.1f}s)")  # fmt: skip
    t0 = time.monotonic()
    from replicator.demo.demo import local_stack_neo4j  # noqa: PLC0415 - like the demo, on the local stack

    neo = local_stack_neo4j()
    props = neo4j_roundtrip(neo)
    click.echo(f"neo4j : node written and read back over {neo.uri}: {props} ({time.monotonic() - t0:.1f}s)")
    t0 = time.monotonic()
    q = qdrant_roundtrip(QdrantSettings(path=qdrant_path, collection="replicator_smoke"))
    best, score = q.hits[0]
    click.echo(f"qdrant: {DIMENSIONS}-d vectors upserted at {qdrant_path}; {q.query!r} -> {best} ({score:.3f}) "
               f"({time.monotonic() - t0:.1f}s)")  # fmt: skip
    if k.received != k.sent or not props or best != "PostgreSQL":
        raise click.ClickException("smoke path gave unexpected results (see above)")
    click.echo("smoke: OK")
