"""Qdrant destination throughput vs the model alone, in the same run at the same batch size.

raw:         model.encode over N distinct entity texts, `--batch` per call (the floor: CPU-bound)
destination: QdrantDestination.apply over batches of `--batch` create events (Avro-decoded) of the
             same texts into a fresh local-mode collection: read states, plan, encode, upsert, position
payload:     a confidence-only update of every entity (no embedding), for scale
snapshot:    a snapshot as the source publishes it: every entity (op r) in batches of `--batch`, then
             the stored embedding of each (op r), then the heartbeats that pass it; CPU seconds and
             model calls (the store's vectors make every one of them avoidable)
Rounds alternate raw/destination (the CPU is shared); the best round of each is reported.
Goal: destination >= 85% of raw.
Usage: PYTHONPATH=. .venv/bin/python bench/qdrant_sink.py [--n 256] [--batch 32] [--rounds 2] [--storage path|memory]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient
from sentence_transformers import SentenceTransformer

from replicator.embedding import load_model, model_version
from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings
from replicator.sinks.settings import QdrantSettings
from replicator.store.schema import pack_vector
from replicator.testing.events import Stream, entity_image, text_of

_WORDS = ["graph", "vector", "replica", "kafka", "store", "agent", "memory", "sink", "change", "event", "batch"]


def _images(n: int) -> list[dict[str, Any]]:
    return [
        entity_image(i, f"entity {i}", "concept", [" ".join(_WORDS[(i + k) % len(_WORDS)] for k in range(8)), f"n{i}"])
        for i in range(1, n + 1)
    ]


def _raw(model: SentenceTransformer, texts: list[str], batch: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, len(texts), batch):
        model.encode(texts[start : start + batch], batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
    return len(texts) / (time.perf_counter() - t0)


def _destination(
    model: SentenceTransformer, images: list[dict[str, Any]], batch: int, root: Path, memory: bool
) -> tuple[float, float]:
    settings = QdrantSinkSettings(QdrantSettings(path=root, collection="bench"), sink="bench", encode_batch=batch)
    client = QdrantClient(":memory:") if memory else None
    destination = QdrantDestination(settings, client=client, model=model)
    destination.start()
    s = Stream()
    creates = [s.entity("c", i, image) for i, image in enumerate(images, start=1)]
    updates = [s.entity("u", len(images) + i, {**im, "confidence": 0.5}) for i, im in enumerate(images, start=1)]
    try:
        t0 = time.perf_counter()
        for start in range(0, len(creates), batch):
            destination.apply(s.batch(creates[start : start + batch]))
        created = len(creates) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for start in range(0, len(updates), batch):
            destination.apply(s.batch(updates[start : start + batch]))
        updated = len(updates) / (time.perf_counter() - t0)
        assert destination.stats.computed == len(images) and destination.stats.payload_only == len(images)
    finally:
        destination.close()
        if client is not None:
            client.close()
    return created, updated


def _snapshot(model: SentenceTransformer, images: list[dict[str, Any]], batch: int, root: Path) -> tuple[float, int]:
    """CPU seconds and model calls of applying a snapshot of ``images``, each with a stored vector."""
    settings = QdrantSinkSettings(QdrantSettings(path=root, collection="bench"), sink="bench", encode_batch=batch)
    destination = QdrantDestination(settings, model=model)
    destination.start()
    s, seq = Stream(), len(images) + 1
    vectors = model.encode([text_of(im) for im in images], normalize_embeddings=True)  # what the store holds
    entities = [s.entity("r", seq, image) for image in images]
    embeddings = [s.embedding(seq, im["id"], pack_vector(v.tolist()), text_of(im), op="r") for im, v in
                  zip(images, vectors, strict=True)]  # fmt: skip
    batches = [entities[i : i + batch] for i in range(0, len(entities), batch)]
    batches += [embeddings[i : i + batch] for i in range(0, len(embeddings), batch)]
    batches.append([s.heartbeat(s.entities, seq + 1), s.heartbeat(s.embeddings, seq + 1)])
    try:
        t0 = time.process_time()
        for events in batches:
            destination.apply(s.batch(events))
        return time.process_time() - t0, destination.stats.computed
    finally:
        destination.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--storage", choices=["path", "memory"], default="path",
        help="local mode on disk (one SQLite commit per point) or in memory (no persistence cost)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench/results/qdrant_sink.json"))
    args = parser.parse_args()
    model = load_model()
    images = _images(args.n)
    texts = [text_of(im) for im in images]
    model.encode(texts[: args.batch])  # warm-up
    raw, dest, payload, snapshot = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            raw.append(_raw(model, texts, args.batch))
            created, updated = _destination(model, images, args.batch, Path(tmp) / f"r{r}", args.storage == "memory")
            dest.append(created)
            payload.append(updated)
            if args.storage == "path":
                snapshot.append(_snapshot(model, images, args.batch, Path(tmp) / f"s{r}"))
    result = {
        "n_events": args.n,
        "batch": args.batch,
        "rounds": args.rounds,
        "raw_encode_texts_per_s": round(max(raw), 1),
        "destination_events_per_s": round(max(dest), 1),
        "ratio": round(max(dest) / max(raw), 3),
        "payload_only_events_per_s": round(max(payload), 1),
        "snapshot_cpu_s": round(min(c for c, _ in snapshot), 2) if snapshot else None,
        "snapshot_model_calls": snapshot[0][1] if snapshot else None,
        "snapshot_entities_with_stored_vectors": args.n,
        "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        "all_rounds": {"raw": [round(x, 1) for x in raw], "destination": [round(x, 1) for x in dest]},
        "model": model_version(),
        "qdrant": f"qdrant-client local mode ({args.storage})",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.storage] = result  # one entry per storage mode
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
