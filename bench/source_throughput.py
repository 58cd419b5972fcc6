"""Events/s of the source's stream vs a raw bound measured in the same run on the same rows.

raw bound: the work any source of these events must do, done plainly: per page of --batch-rows
           changelog rows, in one read transaction, read the state of each row they name (every
           column, and the entity's text beside an embedding: capture records keys only), build
           the same event (every field) as a plain dict, Avro-encode it and its key with the
           product's codec (fastavro), produce both with the same headers, one Kafka transaction
           per page (no heartbeats, no positions, no deletes, no coalescing, no parking checks).
raw minimal: the older, lighter loop, kept for comparison: a minimal record (6 of 12 entity
           columns, no embedding text), no headers, no Kafka transaction.
source:    ``SourceDaemon`` streaming the same backlog (transactions of --batch-rows rows + positions
           + heartbeats + changelog deletes), from the moment it is connected (producer initialised,
           position read: a fixed start-up cost the raw loop does not pay either) until its
           committed seq reaches the head.

Needs the local Kafka (REPLICATOR_KAFKA_BOOTSTRAP, default 127.0.0.1:9092); uses throwaway topics.
Usage: PYTHONPATH=. .venv/bin/python bench/source_throughput.py [--rows 20000] [--batch-rows 500] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Final, cast

from confluent_kafka import Producer

from replicator import __version__
from replicator.capture.install import install
from replicator.capture.triggers import CHANGELOG, MARK
from replicator.embedding import entity_text
from replicator.events import headers
from replicator.events.avro import EMBEDDING_CHANGE, ENTITY_CHANGE, codec, encode_key
from replicator.events.envelope import CONNECTOR
from replicator.source.daemon import SourceDaemon
from replicator.source.kafka import ensure_topics
from replicator.source.settings import SourceSettings
from replicator.source.store import StoreReader
from replicator.store.schema import ENTITY_COLUMNS
from replicator.testing.writer import MemoryWriter
from replicator.transport.kafka import delete_topic
from replicator.transport.settings import KafkaSettings
from replicator.transport.topics import positions_topic

STORE_ID: Final = uuid.uuid4().hex  # as long as a real store id


def _state_sql() -> dict[str, str]:
    """The state of the row a changelog row names, as the source reads it: every column, plus the
    entity's text beside an embedding."""
    cols = ", ".join(ENTITY_COLUMNS)
    return {
        "entities": f"SELECT {cols} FROM entities WHERE id = ?",
        "embeddings": "SELECT t.entity_id, t.embedding, t.model_version, t.created_at, e.name, e.entity_type, "
        "e.observations FROM embeddings AS t LEFT JOIN entities AS e ON e.id = t.entity_id WHERE t.entity_id = ?",
    }


def _fair_value(table: str, found: tuple[Any, ...], source: dict[str, Any]) -> bytes:
    """The event the source publishes for this state (every field), built plainly and Avro-encoded."""
    if table == "entities":
        rec: dict[str, Any] = dict(zip(ENTITY_COLUMNS, found, strict=True))
        rec["observations"] = json.loads(rec["observations"])
        rec["extra"] = None
        return codec(ENTITY_CHANGE).encode({"op": "c", "before": None, "after": rec, "source": source, "ts_ms": 0})
    entity_id, vector, model, created, name, entity_type, observations = found
    rec = {"entity_id": entity_id, "vector": vector, "model_version": model, "created_at": created,
           "text": entity_text(name, entity_type, json.loads(observations)), "extra": None}  # fmt: skip
    return codec(EMBEDDING_CHANGE).encode({"op": "c", "before": None, "after": rec, "source": source, "ts_ms": 0})


def _raw(db: Path, kafka: KafkaSettings, topic: str, batch_rows: int) -> tuple[int, float, float]:
    """The bound: per page of ``batch_rows`` changelog rows, in one read transaction, read each row's
    state (every column, the entity text beside an embedding), Avro-encode the whole event and its
    key, produce both with the source's headers; one Kafka transaction per page."""
    conn = sqlite3.connect(db, isolation_level=None)
    producer = Producer({**kafka.producer(), "transactional.id": f"bench-raw-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    state = _state_sql()
    t0, cpu0 = time.perf_counter(), time.process_time()
    count, after = 0, 0
    while True:
        conn.execute("BEGIN")
        rows = conn.execute(
            f"SELECT seq, tbl, row_id, ts_ms FROM {CHANGELOG} WHERE seq > ? AND op <> '{MARK}' ORDER BY seq LIMIT ?",
            (after, batch_rows),
        ).fetchall()
        producer.begin_transaction()
        for seq, table, row_id, ts_ms in rows:
            found = conn.execute(state[table], (row_id,)).fetchone()
            source = {"connector": CONNECTOR, "version": __version__, "store": STORE_ID, "table": table,
                      "seq": seq, "snapshot": "false", "ts_ms": ts_ms}  # fmt: skip
            _produce(producer, topic, encode_key(row_id), _fair_value(table, found, source), headers.make(table, seq))
            count += 1
        producer.commit_transaction(30)
        conn.execute("COMMIT")
        if not rows:
            break
        after = rows[-1][0]
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    conn.close()
    return count, elapsed, cpu


def _produce(producer: Producer, topic: str, key: bytes, value: bytes, hdrs: headers.Headers | None = None) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, headers=cast(Any, hdrs))
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)


def _raw_minimal(db: Path, kafka: KafkaSettings, topic: str) -> tuple[int, float, float]:
    """The older, lighter bound: the same reads, but a minimal record (6 of 12 entity columns, no
    embedding text, placeholder ``source`` strings), no headers, no Kafka transaction."""
    conn = sqlite3.connect(db, isolation_level=None)
    producer = Producer({**kafka.producer(), "linger.ms": 5})
    source = {"version": "0", "store": "s", "table": "", "seq": 0, "ts_ms": 0}
    state = {
        "entities": "SELECT id, name, entity_type, observations, created_at, updated_at FROM entities WHERE id = ?",
        "embeddings": "SELECT entity_id, embedding, model_version, created_at FROM embeddings WHERE entity_id = ?",
    }
    t0, cpu0 = time.perf_counter(), time.process_time()
    count, after = 0, 0
    while True:
        conn.execute("BEGIN")
        rows = conn.execute(
            f"SELECT seq, tbl, row_id FROM {CHANGELOG} WHERE seq > ? AND op <> '{MARK}' ORDER BY seq LIMIT 5000",
            (after,),
        ).fetchall()
        for _seq, table, row_id in rows:
            found = conn.execute(state[table], (row_id,)).fetchone()
            if table == "entities":
                rec: dict[str, Any] = dict(zip(("id", "name", "entity_type", "observations", "created_at",
                                                "updated_at"), found, strict=True))  # fmt: skip
                rec["observations"] = json.loads(rec["observations"])
                value = codec(ENTITY_CHANGE).encode({"op": "c", "after": rec, "source": source, "ts_ms": 0})
            else:
                rec = dict(zip(("entity_id", "vector", "model_version", "created_at"), found, strict=True))
                value = codec(EMBEDDING_CHANGE).encode({"op": "c", "after": rec, "source": source, "ts_ms": 0})
            _produce(producer, topic, encode_key(row_id), value)
            count += 1
        conn.execute("COMMIT")
        if not rows:
            break
        after = rows[-1][0]
    producer.flush(60)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    conn.close()
    return count, elapsed, cpu


def _run_until(daemon: SourceDaemon, target: int) -> tuple[float, float]:
    """Run ``daemon`` until it committed ``target`` with no snapshot pending; seconds it took, and
    the process's CPU seconds meanwhile."""
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    while not daemon.kafka_ok:  # connected and its position read: the stream starts now
        time.sleep(0.001)
    t0, cpu0 = time.perf_counter(), time.process_time()
    while daemon.committed_seq < target or daemon.snapshot is not None:
        time.sleep(0.005)
        if not thread.is_alive():
            sys.exit("source stopped early")
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    daemon.request_stop()
    thread.join(60)
    return elapsed, cpu


def _round(kafka: KafkaSettings, rows: int, batch_rows: int) -> dict[str, Any]:
    """One measurement on a fresh store and topics: the two raw loops, then the source, on one backlog."""
    prefix = f"bench{uuid.uuid4().hex[:8]}.caxton.memory"
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "memory.db"
        writer = MemoryWriter.create(db)
        install(db)
        settings = SourceSettings(db=db, bootstrap_servers=kafka.bootstrap_servers, topic_prefix=prefix,
                                  batch_rows=batch_rows)  # fmt: skip
        reader = StoreReader(db)
        empty = reader.head_seq()
        reader.close()
        # The (empty) snapshot first: the measured run then streams the changelog.
        _run_until(SourceDaemon(settings, progress=False), empty)
        vector = [0.01 * i for i in range(384)]
        for i in range(rows):
            writer.create_entity(f"entity {i}", "concept", [f"observation {i}", "another"], embedding=vector)
        writer.close()
        reader = StoreReader(db)
        head = reader.head_seq()
        reader.close()
        ensure_topics(kafka, prefix + ".raw", 3)
        min_count, min_s, min_cpu = _raw_minimal(db, kafka, prefix + ".raw.relations")
        raw_count, raw_s, raw_cpu = _raw(db, kafka, prefix + ".raw.entities", batch_rows)
        assert min_count == raw_count, (min_count, raw_count)
        source_s, source_cpu = _run_until(SourceDaemon(settings, progress=False), head)
    for name in ("entities", "relations", "embeddings"):
        delete_topic(kafka, f"{prefix}.{name}")
        delete_topic(kafka, f"{prefix}.raw.{name}")
    delete_topic(kafka, positions_topic(prefix))
    delete_topic(kafka, positions_topic(prefix + ".raw"))
    return {
        "events": raw_count,
        "source_vs_raw_cpu": round(raw_cpu / source_cpu, 3),
        "source_vs_raw_minimal_cpu": round(min_cpu / source_cpu, 3),
        "source_vs_raw": round(raw_s / source_s, 3),
        "source_cpu_us_per_event": round(source_cpu / raw_count * 1e6, 1),
        "raw_cpu_us_per_event": round(raw_cpu / raw_count * 1e6, 1),
        "raw_minimal_cpu_us_per_event": round(min_cpu / raw_count * 1e6, 1),
        "source_events_per_s": round(raw_count / source_s),
        "raw_bound_events_per_s": round(raw_count / raw_s),
        "raw_minimal_events_per_s": round(min_count / min_s),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000, help="entities to create (each + its embedding)")
    parser.add_argument("--batch-rows", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3, help="rounds, each on a fresh store; medians are reported")
    parser.add_argument("--out", type=Path, default=Path("bench/results/source_throughput.json"))
    args = parser.parse_args()
    kafka = KafkaSettings.from_env()
    rounds = [_round(kafka, args.rows, args.batch_rows) for _ in range(args.reps)]
    medians = {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0] if key != "events"}
    result = {
        "command": " ".join(["bench/source_throughput.py", *sys.argv[1:]]),
        "events": rounds[0]["events"],
        "batch_rows": args.batch_rows,
        "median": medians,
        "rounds": rounds,
        "machine": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
        "note": "shared 2-core machine; events are 384-d embeddings and entities, one Kafka broker; CPU time is "
        "the process's (librdkafka's threads included)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"$ python {result['command']}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
