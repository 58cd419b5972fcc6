"""``replicator assess``: the guide's "When to Migrate" indicators measured on a live store.

Read-only and gentle with the writer: the store is opened ``mode=ro`` (never a write lock), and the
vectors are read in short read transactions of ``_CHUNK`` rows, so no read holds back the WAL's
checkpoint for long. Semantic search is measured the way the embedded backend answers it: the query
text embedded with the packaged model, then a full scan of the store's own vectors read from the
file (what sqlite-vec's ``vec0`` does, without depending on that extension), top-k by cosine.

The memory footprint is an estimate, stated as one: the file (a long-running runtime ends up with its
pages cached) plus the vectors as a float32 matrix (what a search scan holds), plus the model.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from replicator.embedding import DIMENSIONS, model_path
from replicator.events.values import embedding_text
from replicator.lifecycle.decide import (
    ENTITY_LIMIT,
    FILE_LIMIT_BYTES,
    MEMORY_LIMIT_BYTES,
    SEARCH_LINE_MS,
    Indicator,
    Verdict,
    decide,
)
from replicator.lifecycle.watch import p95
from replicator.validation.store import StoreReader

_CHUNK: Final = 5_000  # vectors per read transaction
_VECTOR_BYTES: Final = DIMENSIONS * 4

Encoder = Callable[[str], Sequence[float]]


@dataclass(frozen=True)
class SearchTiming:
    queries: int
    k: int
    p50_ms: float
    p95_ms: float
    encode_p50_ms: float
    scan_p50_ms: float
    vectors: int

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Assessment:
    store: str
    at_ms: int
    counts: dict[str, int]
    file_bytes: int
    memory_bytes: int
    search: SearchTiming | None
    indicators: tuple[Indicator, ...]
    verdict: Verdict
    growth: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "at_ms": self.at_ms,
            "counts": self.counts,
            "file_bytes": self.file_bytes,
            "memory_bytes_estimate": self.memory_bytes,
            "search": None if self.search is None else self.search.to_dict(),
            "indicators": [i.to_dict() for i in self.indicators],
            "verdict": self.verdict.to_dict(),
            "growth": self.growth,
        }


def _file_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _model_bytes() -> int:
    try:
        return sum(p.stat().st_size for p in model_path().rglob("*") if p.is_file())
    except Exception:
        return 0


def sample_queries(store: StoreReader, count: int, seed: int = 0) -> list[str]:
    """Up to ``count`` query texts drawn from the store's own entities (their embedding text),
    deterministic for a seed. Blocks on one short read."""
    rows = store.conn.execute("SELECT id FROM entities").fetchall()
    ids = random.Random(seed).sample([int(r[0]) for r in rows], min(count, len(rows)))
    snap = store.read(ids, embeddings=False)
    return [embedding_text(e.name, e.entity_type, e.observations) for e in snap.entities.values()]


def scan(store: StoreReader, query: np.ndarray, k: int) -> tuple[list[int], int]:
    """Top-k entity ids by cosine over every stored vector, read from the file in chunks (one read
    transaction each). Returns the ids and how many vectors were scanned. Blocks."""
    best_ids: list[int] = []
    best_scores = np.zeros(0, dtype=np.float32)
    after, scanned = -1, 0
    while True:
        with store.transaction():
            rows = store.conn.execute(
                "SELECT entity_id, embedding FROM embeddings WHERE entity_id > ? ORDER BY entity_id LIMIT ?",
                (after, _CHUNK),
            ).fetchall()
        if not rows:
            return best_ids, scanned
        after = int(rows[-1][0])
        good = [(int(i), b) for i, b in rows if isinstance(b, bytes) and len(b) == _VECTOR_BYTES]
        scanned += len(good)
        if not good:
            continue
        matrix = np.frombuffer(b"".join(b for _, b in good), dtype="<f4").reshape(len(good), DIMENSIONS)
        norms = np.linalg.norm(matrix, axis=1)
        scores = (matrix @ query) / np.where(norms == 0, 1, norms)
        ids = [i for i, _ in good]
        merged_ids, merged = best_ids + ids, np.concatenate([best_scores, scores.astype(np.float32)])
        order = np.argsort(-merged, kind="stable")[:k]
        best_ids, best_scores = [merged_ids[j] for j in order], merged[order]


def time_search(store: StoreReader, encode: Encoder, queries: Sequence[str], k: int) -> SearchTiming | None:
    """Each query embedded and scanned, timed; None without queries. Blocks."""
    if not queries:
        return None
    totals, encodes, scans, scanned = [], [], [], 0
    encode(queries[0])  # the first call pays for lazy initialisation, which no runtime query pays
    for text in queries:
        t0 = time.perf_counter()
        vector = np.asarray(encode(text), dtype=np.float32)
        t1 = time.perf_counter()
        _, scanned = scan(store, vector, k)
        t2 = time.perf_counter()
        encodes.append((t1 - t0) * 1000)
        scans.append((t2 - t1) * 1000)
        totals.append((t2 - t0) * 1000)
    return SearchTiming(
        len(queries), k, statistics.median(totals), p95(totals), statistics.median(encodes),
        statistics.median(scans), scanned,
    )  # fmt: skip


def assess(
    path: Path, encode: Encoder | None, *, queries: int = 20, k: int = 10, needs: Sequence[str] = (),
    previous: dict[str, Any] | None = None,
) -> Assessment:  # fmt: skip
    """Measure ``path`` and decide. ``encode`` None skips the search measurement (no model at hand).
    Blocks (seconds per query on a large store). Raises MigrateError for a missing or foreign file,
    ValueError for an unknown need."""
    with StoreReader(path) as store:
        with store.transaction():
            counts = store.counts()
        file_bytes = _file_bytes(path)
        search = None if encode is None else time_search(store, encode, sample_queries(store, queries), k)
    memory = file_bytes + counts["embeddings"] * _VECTOR_BYTES + _model_bytes()
    indicators = [
        Indicator("entities", counts["entities"], ENTITY_LIMIT, "entities"),
        Indicator("file_bytes", file_bytes, FILE_LIMIT_BYTES, "bytes"),
        Indicator("memory_bytes_estimate", memory, MEMORY_LIMIT_BYTES, "bytes"),
    ]
    if search is not None:
        indicators.append(Indicator("search_p50_ms", search.p50_ms, SEARCH_LINE_MS, "ms"))
    verdict = decide(counts["entities"], indicators, needs)
    now = time.time_ns() // 1_000_000
    growth = _growth(previous, counts, file_bytes, now) if previous else {}
    return Assessment(str(path), now, counts, file_bytes, memory, search, tuple(indicators), verdict, growth)


def _growth(previous: dict[str, Any], counts: dict[str, int], file_bytes: int, now_ms: int) -> dict[str, Any]:
    """What changed since ``previous`` (an earlier assessment's dict), per day, and when the entity
    count reaches the limit at that rate."""
    days = max((now_ms - int(previous["at_ms"])) / 86_400_000, 1e-9)
    entities = counts["entities"] - int(previous["counts"]["entities"])
    out: dict[str, Any] = {
        "since_ms": int(previous["at_ms"]),
        "days": round(days, 3),
        "entities": entities,
        "relations": counts["relations"] - int(previous["counts"]["relations"]),
        "file_bytes": file_bytes - int(previous["file_bytes"]),
        "entities_per_day": round(entities / days, 1),
    }
    if entities > 0 and counts["entities"] < ENTITY_LIMIT:
        out["days_to_entity_limit"] = round((ENTITY_LIMIT - counts["entities"]) / (entities / days), 3)
    return out


def last_assessment(history: Path) -> dict[str, Any] | None:
    """The newest assessment kept in ``history`` (JSON lines) for comparison, or None. A line that is
    not an assessment is skipped (a file edited by hand keeps working)."""
    if not history.exists():
        return None
    for line in reversed(history.read_text().splitlines()):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and {"at_ms", "counts", "file_bytes"} <= data.keys():
            return data
    return None


def keep(history: Path, assessment: Assessment) -> None:
    """Append ``assessment`` to ``history`` (created with its directory)."""
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a") as f:
        f.write(json.dumps(assessment.to_dict()) + "\n")
