"""The full comparison (``validate --full``, cutover's pre-check), streamed in pages of entity ids.

Both sides' ids are read first (ids only), which names every missing and extra key. The entities
are then compared a page at a time: the store's page and the destination's page are read (one query
per side and kind: entities, the relations touching them, the vectors), compared, and dropped, so
the memory held is one page's records, not the store's. The mismatches are the same as those of a
comparison of both sides held whole:

* every entity of either side is in exactly one page;
* a relation is read with each page holding one of its endpoints (on either side) and compared in
  one page only: the page of its smallest endpoint id among the paged ids, over both copies (its
  other copy, when the page did not read it, is fetched by id, as for a whole comparison);
* a relation only the key scan names (no endpoint among the paged ids) is compared at the end.

Blocks; raises what the readers raise (MigrateError).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final, Protocol

from replicator.validation.diff import Mismatch, compare_embeddings, compare_entities, compare_keys, compare_relations
from replicator.validation.model import Keys, Relation, Snapshot

#: Entity ids per page: with ~10 relations per entity, ~20K relation records per page and side.
PAGE: Final = 1000


class PagedStore(Protocol):
    """What the comparison reads from the store (``StoreReader``, inside its transaction)."""

    def read(self, entity_ids: Sequence[int] | None = None, *, embeddings: bool = True,
             relations: bool = True) -> Snapshot: ...  # fmt: skip
    def read_relations(self, relation_ids: Sequence[int]) -> dict[int, Relation]: ...


class PagedDestination(Protocol):
    """What the comparison reads from a destination (GraphReader, QdrantReader, SinkEndpointReader)."""

    def keys(self) -> Keys: ...
    def read(self, entity_ids: Sequence[int] | None = None) -> Snapshot: ...


def _pages(ids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def compare_full(
    target: str, store: PagedStore, dest: PagedDestination, store_keys: Keys, *, page: int | None = None
) -> list[Mismatch]:
    """Every key of both sides and every entity (neo4j: and relation; qdrant: and vector) field by
    field, ``page`` (default :data:`PAGE`) entity ids at a time. Returns the mismatches (a key may
    appear more than once: the caller merges them)."""
    keys = dest.keys()
    found = compare_keys(target, "entity", store_keys.entities, keys.entities)
    if target == "neo4j":
        found += compare_keys(target, "relation", store_keys.relations, keys.relations)
    del keys  # the destination's ids: no longer needed
    paged = store_keys.entities | {m.key for m in found if m.kind == "entity"}
    pending = {m.key for m in found if m.kind == "relation"}  # the key scan's: compared where met
    ids = sorted(paged)
    for part in _pages(ids, page or PAGE):
        mine = store.read(part, embeddings=target == "qdrant", relations=target == "neo4j")
        theirs = dest.read(part)
        found += compare_entities(target, mine, theirs, part)
        if target == "neo4j":
            found += _page_relations(
                target, store, dest, mine=mine, theirs=theirs, bounds=(part[0], part[-1]), paged=paged, pending=pending
            )
        else:
            found += compare_embeddings(target, mine, theirs, part)
    if pending:  # relations between ids no page holds (e.g. dangling endpoints)
        rest = sorted(pending)
        mine, theirs = Snapshot("store"), Snapshot(target)
        mine.relations = store.read_relations(rest)
        theirs.relations = read_relations(dest, rest)
        found += compare_relations(target, mine, theirs, rest)
    return found


def read_relations(dest: PagedDestination, ids: Sequence[int]) -> dict[int, Relation]:
    """The relations with these ids from a graph reader (``read_relations``: neo4j only)."""
    read: object = getattr(dest, "read_relations")  # noqa: B009 - the graph reader's, neo4j only
    assert callable(read)
    found: dict[int, Relation] = read(ids)
    return found


def _page_relations(
    target: str,
    store: PagedStore,
    dest: PagedDestination,
    *,
    mine: Snapshot,
    theirs: Snapshot,
    bounds: tuple[int, int],
    paged: frozenset[int],
    pending: set[int],
) -> list[Mismatch]:
    """The relations this page owns (see the module docstring), both copies complete, compared."""
    mine.relations.update(store.read_relations(sorted(set(theirs.relations) - set(mine.relations))))
    theirs.relations.update(read_relations(dest, sorted(set(mine.relations) - set(theirs.relations))))
    owned = []
    for key in set(mine.relations) | set(theirs.relations):
        ends = [
            end
            for rel in (mine.relations.get(key), theirs.relations.get(key))
            if rel is not None
            for end in (rel.from_entity_id, rel.to_entity_id)
            if end in paged
        ]
        if ends and bounds[0] <= min(ends) <= bounds[1]:
            owned.append(key)
            pending.discard(key)
    return compare_relations(target, mine, theirs, owned)
