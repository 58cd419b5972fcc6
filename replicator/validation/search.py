"""Search consistency: do the store and Qdrant return the same neighbours for the same queries?

The store side is a brute-force cosine search over the store's own ``embeddings`` table (the vectors
the runtime searches today); the Qdrant side is ``query_points`` on the collection. The overlap of a
query is ``|store top-k ∩ Qdrant top-k| / max(|store top-k|, |Qdrant top-k|)`` (1.0 when both are
empty). A query is consistent when its overlap is at least ``query_threshold`` (the seed: 0.8); the
search consistency is the fraction of consistent queries, which must reach ``search_threshold``
(the seed: 0.95).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

#: The seed's "Migration Validation" queries.
DEFAULT_QUERIES: Final = (
    "machine learning algorithms",
    "database optimization",
    "software architecture patterns",
    "error handling strategies",
    "performance optimization",
)


@dataclass(frozen=True)
class QueryOverlap:
    query: str
    overlap: float
    consistent: bool
    store_top: tuple[int, ...]
    destination_top: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "overlap": round(self.overlap, 4),
            "consistent": self.consistent,
            "store_top": list(self.store_top),
            "destination_top": list(self.destination_top),
        }


def overlap(a: Sequence[int], b: Sequence[int]) -> float:
    """Shared ids over the longer list; 1.0 when both are empty. Pure."""
    if not a and not b:
        return 1.0
    return len(set(a) & set(b)) / max(len(a), len(b))


def consistency(results: Sequence[QueryOverlap]) -> float:
    """Fraction of consistent queries (1.0 for no queries). Pure."""
    return 1.0 if not results else sum(r.consistent for r in results) / len(results)


class StoreIndex:
    """The store's vectors as one L2-normalised matrix, searched by dot product (= cosine)."""

    def __init__(self, vectors: Mapping[int, Sequence[float]]) -> None:
        self.ids = np.array(sorted(vectors), dtype=np.int64)
        if not len(self.ids):
            self.matrix = np.zeros((0, 0), dtype=np.float32)
            return
        matrix = np.array([vectors[i] for i in self.ids.tolist()], dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.matrix = (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)

    def search(self, vector: Sequence[float], limit: int) -> list[int]:
        if not len(self.ids):
            return []
        scores = self.matrix @ np.asarray(vector, dtype=np.float32)
        # Stable order for equal scores: by score descending, then id ascending.
        order = np.lexsort((self.ids, -scores))[:limit]
        return [int(i) for i in self.ids[order]]


def compare_search(
    queries: Sequence[str],
    query_vectors: Sequence[Sequence[float]],
    store: StoreIndex,
    destination_search: Callable[[Sequence[float], int], list[int]],
    *,
    top_k: int,
    query_threshold: float,
) -> list[QueryOverlap]:
    """Run every query on both sides and measure the overlap of their top-k. Blocks on the
    destination."""
    out: list[QueryOverlap] = []
    for query, vector in zip(queries, query_vectors, strict=True):
        mine = store.search(vector, top_k)
        theirs = destination_search(vector, top_k)
        value = overlap(mine, theirs)
        out.append(QueryOverlap(query, value, value >= query_threshold, tuple(mine), tuple(theirs)))
    return out
