"""The full comparison streams in pages: it never asks a reader for more than one page of entities,
and it reports exactly what a comparison of both sides held whole reports."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest

from replicator.store.schema import DDL
from replicator.validation import full
from replicator.validation.diff import merge
from replicator.validation.full import compare_full
from replicator.validation.model import Embedding, Entity, Keys, Relation, Snapshot
from replicator.validation.store import StoreReader
from replicator.validation.validate import ValidationOptions, _validate_target, validate


class FakeSide:
    """A backend held whole in memory, read like the real readers; records the largest batch."""

    def __init__(self, snap: Snapshot, *, graph: bool) -> None:
        self.snap, self.graph, self.largest = snap, graph, 0
        if graph:  # a relationship is seen between entity-label nodes only (entities, placeholders)
            nodes = set(snap.entities) | snap.placeholders
            snap.relations = {k: r for k, r in snap.relations.items() if {r.from_entity_id, r.to_entity_id} <= nodes}

    def _note(self, ids: Iterable[int] | None) -> set[int]:
        wanted = set(self.snap.entities) | self.snap.placeholders if ids is None else set(ids)
        self.largest = max(self.largest, len(wanted))
        return wanted

    def keys(self) -> Keys:
        return Keys(frozenset(self.snap.entities), frozenset(self.snap.relations), frozenset(self.snap.placeholders))

    def read(self, entity_ids: Iterable[int] | None = None, *, embeddings: bool = True,
             relations: bool = True) -> Snapshot:  # fmt: skip
        ids = self._note(entity_ids)
        out = Snapshot(self.snap.backend, placeholders=self.snap.placeholders & ids)
        out.entities = {k: e for k, e in self.snap.entities.items() if k in ids}
        out.embeddings = {k: v for k, v in self.snap.embeddings.items() if k in ids and embeddings}
        for key, rel in self.snap.relations.items():
            if relations and ids & {rel.from_entity_id, rel.to_entity_id}:
                out.relations[key] = rel
        return out

    def read_relations(self, relation_ids: Iterable[int]) -> dict[int, Relation]:
        ids = set(relation_ids)
        return {k: r for k, r in self.snap.relations.items() if k in ids}


def _sides(seed: int, n: int = 60) -> tuple[Snapshot, Snapshot]:
    """A store and a destination that differs from it in every way a comparison must name."""
    rng = random.Random(seed)
    store, dest = Snapshot("store"), Snapshot("neo4j")
    for i in range(1, n + 1):
        store.entities[i] = Entity(i, f"e{i}", "concept", ("o",))
    dest.entities = dict(store.entities)
    rid = 0
    for i in range(1, n + 1):
        for _ in range(3):
            rid += 1
            store.relations[rid] = Relation(rid, i, rng.randint(1, n), "knows", from_name="x", to_name="y")
    dest.relations = {k: replace(r, graph_type="KNOWS") for k, r in store.relations.items()}
    for key in rng.sample(sorted(store.entities), 8):
        dest.entities.pop(key)
        if rng.random() < 0.5:
            dest.placeholders.add(key)  # a placeholder keeps its relationships
        else:
            dest.relations = {k: r for k, r in dest.relations.items() if key not in (r.from_entity_id, r.to_entity_id)}
    for key in rng.sample(sorted(dest.entities), 5):
        dest.entities[key] = replace(dest.entities[key], name="changed")
    for key in rng.sample(sorted(dest.relations), 12):
        dest.relations[key] = replace(dest.relations[key], to_entity_id=rng.randint(1, n + 5), strength=0.5)
    for key in (n + 1, n + 2):  # extra entities, one with a relationship of its own
        dest.entities[key] = Entity(key, f"x{key}", "concept", ())
    dest.relations[10_000] = Relation(10_000, n + 1, n + 2, "knows", graph_type="KNOWS")
    store.relations[20_000] = Relation(20_000, n + 50, n + 60, "knows")  # dangling in the store
    return store, dest


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("page", [1, 7, 1000])
def test_paged_comparison_reports_what_the_whole_comparison_reports(seed: int, page: int) -> None:
    mine, theirs = _sides(seed)
    store, dest = FakeSide(mine, graph=False), FakeSide(theirs, graph=True)
    keys = store.keys()
    whole = merge(_validate_target("neo4j", store, dest, sorted(keys.entities), keys))  # type: ignore[arg-type]
    store.largest = dest.largest = 0
    paged = merge(compare_full("neo4j", store, dest, keys, page=page))
    assert whole  # the sides do differ
    assert [(str(m), m.destination) for m in paged] == [(str(m), m.destination) for m in whole]
    assert max(store.largest, dest.largest) <= page


def _store_file(path: Path, n: int) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(DDL)
    conn.executemany(
        "INSERT INTO entities (id, name, entity_type, observations, created_at, updated_at)"
        " VALUES (?, ?, 'concept', '[]', 1, 1)",
        [(i, f"e{i}") for i in range(1, n + 1)],
    )
    conn.commit()
    conn.close()


def test_validate_full_holds_one_page_of_entities_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``validate --full`` (cutover's pre-check): neither the store nor the destination is asked for
    more than a page of entities, whatever the store's size."""
    n = 2_500
    _store_file(tmp_path / "memory.db", n)
    with StoreReader(tmp_path / "memory.db") as whole:
        snap = whole.read(None)  # the destination holds what the store holds, each with a computed vector
    snap.embeddings = {i: Embedding(i, (1.0,) * 384) for i in snap.entities}
    asked: list[int] = []
    read = StoreReader.read

    def store_read(self: StoreReader, entity_ids: Iterable[int] | None = None, **kw: bool) -> Snapshot:
        asked.append(n if entity_ids is None else len(set(entity_ids)))
        return read(self, entity_ids, **kw)

    monkeypatch.setattr(StoreReader, "read", store_read)
    monkeypatch.setattr(full, "PAGE", 1000)

    class Endpoint(FakeSide):
        def counts(self) -> dict[str, int]:
            return {"points": len(self.snap.entities)}

        def foreign_writes(self) -> list[str]:
            return []

        def close(self) -> None:
            pass

        def __enter__(self) -> Endpoint:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    endpoint = Endpoint(snap, graph=False)
    report = validate(
        tmp_path / "memory.db", ["qdrant"], qdrant_reader=lambda: endpoint,  # type: ignore[arg-type,return-value]
        options=ValidationOptions(full=True, search=False),
    )  # fmt: skip
    assert report.ok, report.to_text()
    assert report.sampled == n
    assert max(asked) <= full.PAGE, f"the store was asked for {max(asked)} entities at once"
    assert endpoint.largest <= full.PAGE, f"the destination was asked for {endpoint.largest} entities at once"
