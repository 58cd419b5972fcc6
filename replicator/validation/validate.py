"""Validation: does a destination hold what the store holds? (seed, "Migration Validation")

Checks, per target:

1. **counts**: entities (and relations, Neo4j) in the store vs the destination (placeholders and
   tombstones are not entities);
2. **keys** (skipped in fast mode): every id on both sides, so every missing and extra key is named;
3. **sample** (or every key with ``full``): entities compared field by field, the relations touching
   them (Neo4j, including the relationship type), vectors (Qdrant);
4. **search consistency** (Qdrant, skipped in fast mode): the seed's queries, embedded with the
   packaged model, against the store's own vectors (brute force) and Qdrant (``query_points``).

The report is valid when no key mismatches, every count matches and the search consistency reaches
its threshold. The store is read in one read transaction (a consistent state; the writer is never
blocked). Validate while the sinks are caught up (lag ~0) or under cutover's fence: a destination that
lags shows the lag as mismatches. Blocks; raises MigrateError when a backend cannot be read.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from replicator.events.values import embedding_text
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.neo4j.reader import GraphReader
from replicator.sinks.qdrant.reader import QdrantReader, SinkEndpointReader
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.validation.diff import (
    Mismatch,
    compare_embeddings,
    compare_entities,
    compare_keys,
    compare_relations,
    merge,
)
from replicator.validation.errors import MigrateError
from replicator.validation.full import compare_full, read_relations
from replicator.validation.model import Keys
from replicator.validation.search import DEFAULT_QUERIES, QueryOverlap, StoreIndex, compare_search, consistency
from replicator.validation.store import StoreReader

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

TARGETS: Final = ("neo4j", "qdrant", "hybrid")
FAST_SAMPLE: Final = 20


def expand_targets(targets: Iterable[str]) -> tuple[str, ...]:
    """``hybrid`` means both destinations. Raises MigrateError for an unknown name."""
    out: list[str] = []
    for name in targets:
        if name not in TARGETS:
            raise MigrateError(f"unknown target {name!r}", hint="use neo4j, qdrant or hybrid")
        for t in ("neo4j", "qdrant") if name == "hybrid" else (name,):
            if t not in out:
                out.append(t)
    return tuple(out)


@dataclass(frozen=True)
class ValidationOptions:
    """How thorough a validation is. ``full`` compares every key; ``fast`` (cutover) checks counts
    and a small sample only (no key scan, no search)."""

    sample: int = 100
    full: bool = False
    fast: bool = False
    search: bool = True
    queries: tuple[str, ...] = DEFAULT_QUERIES
    top_k: int = 10
    query_threshold: float = 0.8
    search_threshold: float = 0.95
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.sample < 0:
            raise MigrateError(f"--sample {self.sample} is negative", hint="e.g. --sample 100, or --full")
        if self.top_k < 1:
            raise MigrateError(f"--top-k {self.top_k} must be at least 1", hint="e.g. --top-k 10")
        for name, value in (("query", self.query_threshold), ("search", self.search_threshold)):
            if not 0.0 <= value <= 1.0:
                raise MigrateError(f"the {name} threshold {value:g} is not in [0, 1]", hint="e.g. 0.8 / 0.95")

    @property
    def mode(self) -> str:
        return "full" if self.full else "fast" if self.fast else "sample"


@dataclass
class ValidationReport:
    """The outcome. ``ok`` is False when any key mismatches, any count differs, or the search
    consistency is below its threshold. ``problems`` says why in one line each."""

    ok: bool
    targets: tuple[str, ...]
    mode: str
    sampled: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    mismatches: list[Mismatch] = field(default_factory=list)
    search: list[QueryOverlap] = field(default_factory=list)
    search_consistency: float | None = None
    search_threshold: float = 0.95
    problems: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "targets": list(self.targets),
            "mode": self.mode,
            "sampled": self.sampled,
            "counts": self.counts,
            "mismatches": [m.to_dict() for m in self.mismatches],
            "search": [q.to_dict() for q in self.search],
            "search_consistency": self.search_consistency,
            "search_threshold": self.search_threshold,
            "problems": self.problems,
            "duration_s": round(self.duration_s, 3),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        lines = [f"validation ({self.mode}, {', '.join(self.targets)}): {'VALID' if self.ok else 'INVALID'}"]
        for target, counts in self.counts.items():
            lines.append(f"  {target}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        lines.append(f"  sampled entities: {self.sampled}")
        for q in self.search:
            mark = "ok" if q.consistent else "LOW"
            lines.append(f"  search {q.query!r}: overlap {q.overlap:.2f} {mark}")
        if self.search_consistency is not None:
            lines.append(f"  search consistency {self.search_consistency:.2f} (threshold {self.search_threshold:g})")
        lines.extend(f"  problem: {p}" for p in self.problems)
        lines.extend(f"  mismatch: {m}" for m in self.mismatches)
        return "\n".join(lines)


def _count_problems(target: str, store: dict[str, int], dest: dict[str, int]) -> list[str]:
    pairs = [("entities", "entities" if target == "neo4j" else "points")]
    if target == "neo4j":
        pairs.append(("relations", "relations"))
    return [f"{target}: {dest[d]} {d}, the store has {store[s]} {s}" for s, d in pairs if store[s] != dest[d]]


def _validate_target(
    target: str,
    store: StoreReader,
    dest: GraphReader | QdrantReader | SinkEndpointReader,
    sample: Sequence[int],
    store_keys_: Keys | None,
    *,
    full: bool = False,
) -> list[Mismatch]:
    """Keys and fields of one destination (counts and search are done by the caller); ``full``:
    every key, streamed a page at a time (:mod:`replicator.validation.full`)."""
    if full and store_keys_ is not None:
        return compare_full(target, store, dest, store_keys_)
    found: list[Mismatch] = []
    entity_keys = set(sample)
    relation_keys: set[int] = set()
    if store_keys_ is not None:
        keys = dest.keys()
        key_diff = compare_keys(target, "entity", store_keys_.entities, keys.entities)
        if target == "neo4j":
            key_diff += compare_keys(target, "relation", store_keys_.relations, keys.relations)
        found += key_diff
        entity_keys |= {m.key for m in key_diff if m.kind == "entity"}
        relation_keys |= {m.key for m in key_diff if m.kind == "relation"}
    mine = store.read(entity_keys, embeddings=target == "qdrant")
    theirs = dest.read(entity_keys)
    found += compare_entities(target, mine, theirs, entity_keys)
    if target == "neo4j":
        relation_keys |= set(mine.relations) | set(theirs.relations)
        mine.relations.update(store.read_relations(relation_keys - set(mine.relations)))
        theirs.relations.update(read_relations(dest, sorted(relation_keys - set(theirs.relations))))
        found += compare_relations(target, mine, theirs, relation_keys)
    else:
        found += compare_embeddings(target, mine, theirs, entity_keys)
    return found


def _search(
    store: StoreReader, qdrant: QdrantReader, opts: ValidationOptions, model: SentenceTransformer | None
) -> list[QueryOverlap]:
    from replicator.embedding import embed, load_model  # noqa: PLC0415 - heavy, only here

    model = model or load_model()
    snap = store.read(None, embeddings=True)
    vectors: dict[int, Sequence[float]] = {k: e.vector for k, e in snap.embeddings.items()}
    # An entity the store has no vector for is embedded as the Qdrant sink does (design §6:
    # embedding_source "computed"), so both sides search the same population.
    without = [e for k, e in snap.entities.items() if k not in vectors]
    if without:
        texts = [embedding_text(e.name, e.entity_type, e.observations) for e in without]
        for entity, vector in zip(without, embed(model, texts), strict=True):
            vectors[entity.id] = vector
    index = StoreIndex({k: v for k, v in vectors.items() if k in snap.entities})
    query_vectors = embed(model, list(opts.queries))
    return compare_search(
        opts.queries, query_vectors, index, qdrant.search, top_k=opts.top_k, query_threshold=opts.query_threshold
    )


def validate(
    store_path: Path,
    targets: Iterable[str],
    sample: int = 100,
    *,
    neo4j: Neo4jSettings | None = None,
    graph_model: GraphModel | None = None,
    qdrant: QdrantSettings | None = None,
    qdrant_api_key: str | None = None,
    qdrant_reader: Callable[[], QdrantReader | SinkEndpointReader] | None = None,
    options: ValidationOptions | None = None,
    model: SentenceTransformer | None = None,
) -> ValidationReport:
    """Validate ``targets`` (neo4j, qdrant, hybrid) against the store at ``store_path``.

    ``sample`` is used unless ``options`` is given. Neo4j settings default to the environment, and the
    graph is read with the Neo4j sink's ``graph_model`` (its labels and renamed properties); Qdrant
    needs ``qdrant`` (url or path) or ``qdrant_reader`` (e.g. the sink's endpoint, no search). ``model``
    avoids reloading the model. Blocks; read-only; raises MigrateError (unreachable, missing, bad options)."""
    started = time.monotonic()
    opts = options or ValidationOptions(sample=sample)
    names = expand_targets(targets)
    if "qdrant" in names:
        _check_qdrant(qdrant, qdrant_reader is not None, opts)
    report = ValidationReport(ok=False, targets=names, mode=opts.mode, search_threshold=opts.search_threshold)
    mismatches: list[Mismatch] = []
    with StoreReader(store_path) as store, store.transaction():
        store_counts = store.counts()
        store_keys = None if opts.fast else store.keys()
        all_ids = sorted(store_keys.entities) if store_keys is not None else _all_entity_ids(store)
        n = len(all_ids) if opts.full else min(FAST_SAMPLE if opts.fast else opts.sample, opts.sample, len(all_ids))
        chosen = all_ids if opts.full else sorted(random.Random(opts.seed).sample(all_ids, n))
        report.sampled = len(chosen)
        report.counts["store"] = store_counts
        for name in names:
            if name == "neo4j":
                dest: GraphReader | QdrantReader | SinkEndpointReader = GraphReader.connect(
                    neo4j or Neo4jSettings.from_env(), graph_model or GraphModel()
                )
            else:
                dest = _qdrant_reader(qdrant, qdrant_api_key, qdrant_reader)
            with dest:
                if isinstance(dest, GraphReader):
                    dest.check_layout()  # read in another layout, every entity would differ
                report.problems += dest.foreign_writes()
                counts = dest.counts()
                report.counts[name] = counts
                report.problems += _count_problems(name, store_counts, counts)
                mismatches += _validate_target(name, store, dest, chosen, store_keys, full=opts.full)
                if name == "qdrant" and opts.search and not opts.fast:
                    assert isinstance(dest, QdrantReader)  # _qdrant_reader refuses search through a sink
                    report.search = _search(store, dest, opts, model)
                    report.search_consistency = consistency(report.search)
    _conclude(report, mismatches, opts)
    report.duration_s = time.monotonic() - started
    return report


def _conclude(report: ValidationReport, mismatches: list[Mismatch], opts: ValidationOptions) -> None:
    """Mismatches merged per key, a problem line for them and for a low search consistency, the verdict."""
    report.mismatches = merge(mismatches)
    if report.mismatches:
        report.problems.append(f"{len(report.mismatches)} mismatched keys")
    if report.search_consistency is not None and report.search_consistency < opts.search_threshold:
        low = [q.query for q in report.search if not q.consistent]
        report.problems.append(
            f"search consistency {report.search_consistency:.2f} below {opts.search_threshold:g}"
            f" (queries below {opts.query_threshold:g}: {', '.join(low)})"
        )
    report.ok = not report.problems


def _check_qdrant(qdrant: QdrantSettings | None, through_sink: bool, opts: ValidationOptions) -> None:
    if qdrant is None and not through_sink:
        raise MigrateError("validating Qdrant needs its location", hint="pass --qdrant-url URL or --qdrant-path DIR")
    if through_sink and opts.search and not opts.fast:
        raise MigrateError(
            "search consistency needs Qdrant itself, not the sink's endpoint",
            hint="compare without search (--no-search), or stop the sink and pass --qdrant-path",
        )


def _qdrant_reader(
    qdrant: QdrantSettings | None,
    api_key: str | None,
    other: Callable[[], QdrantReader | SinkEndpointReader] | None,
) -> QdrantReader | SinkEndpointReader:
    if other is not None:
        return other()
    assert qdrant is not None  # checked by validate() before anything is read
    return QdrantReader(qdrant, api_key=api_key)


def _all_entity_ids(store: StoreReader) -> list[int]:
    return [int(r[0]) for r in store.conn.execute("SELECT id FROM entities ORDER BY id")]


class TargetSettings(Protocol):
    """What cutover's TargetOptions carries that validation needs (duck-typed: no import cycle)."""

    @property
    def neo4j(self) -> Neo4jSettings: ...
    @property
    def graph_model(self) -> GraphModel: ...
    @property
    def qdrant(self) -> QdrantSettings: ...
    @property
    def qdrant_api_key(self) -> str | None: ...


def validate_store(
    db: Path,
    opts: TargetSettings,
    *,
    targets: Sequence[str] = ("hybrid",),
    full: bool = False,
    sample: int = 100,
    fast: bool = False,
    search: bool = True,
) -> list[str]:
    """Cutover's entry point: validate and return one line per problem and per mismatched key
    (empty = valid). ``fast`` = counts and a small sample only, for use under the fence."""
    report = validate(
        db,
        targets,
        neo4j=opts.neo4j,
        graph_model=opts.graph_model,
        qdrant=opts.qdrant,
        qdrant_api_key=opts.qdrant_api_key,
        options=ValidationOptions(sample=sample, full=full, fast=fast, search=search),
    )
    return [*report.problems, *(str(m) for m in report.mismatches)]
