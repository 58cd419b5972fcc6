"""The pre-check: cutover's full field-by-field comparison, done BEFORE the fence while the writers
run, so that the pause keeps only what must be proven with the store still: watermarks, counts and
the few keys the pre-check could not settle.

Under a live writer a comparison always meets rows that changed between the read of the store and
the read of the destination. So a mismatch is first a *suspect*: its keys are read again from the
store (one read transaction at head seq H), the destination is given time to reach H (its sink's
watermark), and they are compared again, a few rounds. A key that still differs is *unsettled*: it
is compared again under the fence, where nothing moves, and a difference there aborts the cutover.

What this proves, with the fence's own checks (docs/design.md, Cutover): every row the store held
at the pre-check's read is in each destination with every field equal, or was compared under the
fence; every change after it is covered by the watermarks (each sink applied every change up to the
final seq) and the counts (equal under the fence). A change after the pre-check is not compared field
by field again: it is trusted to the pipeline's per-key order and idempotence, which the watermark
certifies complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from replicator.capture.storefile import open_store
from replicator.capture.triggers import head_seq
from replicator.clock import SYSTEM_CLOCK, Clock
from replicator.cutover.budget import within_each
from replicator.position import SinkPosition
from replicator.validation.diff import Mismatch, compare_embeddings, compare_entities, compare_relations
from replicator.validation.model import Relation, Snapshot
from replicator.validation.store import StoreReader

#: The pre-check runs before the fence (no writer waits on it); this only bounds a hung server.
PRECHECK_TIMEOUT_S: Final = 900.0
#: Rounds of re-reading suspect keys before handing them to the fence.
SETTLE_ROUNDS: Final = 4
#: How long one round waits for a sink's watermark to reach the store's head (a live sink takes
#: well under a second; past this the key is left to the fence, never failed here).
SETTLE_WAIT_S: Final = 3.0


class Prechecked(Protocol):
    """A cutover target's pre-check (``cutover.Target.precheck``)."""

    name: str

    def precheck(self, store: Path) -> list[str]: ...


@dataclass(frozen=True)
class PrecheckRun:
    """What ``run_all`` found: why the cutover must not fence, the seconds it took (the slowest
    target's), and each target's own seconds (for the report: which comparison held the cutover)."""

    problems: list[str]
    seconds: float
    by_target: dict[str, float]


def run_all(db: Path, targets: Sequence[Prechecked]) -> PrecheckRun:
    """Every target's pre-check, all at once (each reads its own destination through its own client:
    one after the other they cost their sum), each bounded by PRECHECK_TIMEOUT_S. A failure to compare
    is a reason, named. Blocks."""
    started = time.monotonic()
    took: dict[str, float] = {}

    def timed(target: Prechecked) -> Callable[[], list[str]]:
        def call() -> list[str]:
            begun = time.monotonic()
            try:
                return target.precheck(db)
            finally:
                took[target.name] = time.monotonic() - begun

        return call

    outcomes = within_each({t.name: timed(t) for t in targets}, PRECHECK_TIMEOUT_S, "pre-check")
    problems: list[str] = []
    for name, outcome in outcomes.items():
        if isinstance(outcome, BaseException):  # OutOfTime or a failure to read: named, before any fence
            problems.append(f"{name}: pre-check: {outcome}")
        else:
            problems += outcome
    return PrecheckRun(problems, time.monotonic() - started, dict(took))


class KeyedReader(Protocol):
    """A destination's reader, as validation has them (GraphReader, QdrantReader, SinkEndpointReader)."""

    def read(self, entity_ids: Iterable[int] | None = None) -> Snapshot: ...


@dataclass(frozen=True)
class Keys:
    """Keys to compare: entity ids (their fields, and their vector in Qdrant) and relation ids."""

    entities: frozenset[int] = frozenset()
    relations: frozenset[int] = frozenset()

    @classmethod
    def of(cls, mismatches: Iterable[Mismatch]) -> Keys:
        found = list(mismatches)
        return cls(
            frozenset(m.key for m in found if m.kind in ("entity", "embedding")),
            frozenset(m.key for m in found if m.kind == "relation"),
        )

    def __bool__(self) -> bool:
        return bool(self.entities or self.relations)

    def __len__(self) -> int:
        return len(self.entities) + len(self.relations)


@dataclass
class Settled:
    """The pre-check's outcome for one destination: keys still differing after every round."""

    unsettled: Keys = field(default_factory=Keys)
    suspects: int = 0  # keys the first full comparison found differing
    rounds: int = 0


def read_store(store: StoreReader, keys: Keys, target: str) -> Snapshot:
    """The store's side of ``keys`` (on ``store``'s connection as it stands: wrap the call in
    ``store.transaction()`` for one consistent read). Raises MigrateError."""
    snap = store.read(keys.entities, embeddings=target == "qdrant")
    if target == "neo4j":
        snap.relations.update(store.read_relations(keys.relations - set(snap.relations)))
    return snap


def read_destination(dest: KeyedReader, keys: Keys, target: str) -> Snapshot:
    """The destination's side of ``keys``. Raises what the reader raises."""
    snap = dest.read(keys.entities)
    if target == "neo4j":
        read_relations: Callable[[Iterable[int]], dict[int, Relation]] = getattr(dest, "read_relations")  # noqa: B009
        snap.relations.update(read_relations(keys.relations - set(snap.relations)))
    return snap


def compare_keys(target: str, mine: Snapshot, theirs: Snapshot, keys: Keys) -> list[Mismatch]:
    """Field-by-field comparison of ``keys`` only (neo4j: entities and relations; qdrant: entities
    and their vectors). Pure."""
    found = compare_entities(target, mine, theirs, keys.entities)
    if target == "qdrant":
        return found + compare_embeddings(target, mine, theirs, keys.entities)
    return found + compare_relations(target, mine, theirs, keys.relations)


def settle(
    target: str,
    db: Path,
    first: list[Mismatch],
    dest: Callable[[], KeyedReader],
    position: Callable[[], SinkPosition | None],
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> Settled:
    """Re-compare the keys of ``first`` (a full comparison's mismatches) until they agree, at most
    SETTLE_ROUNDS rounds: each reads them from the store at its head H, waits until ``position()``'s
    watermark reaches H (at most SETTLE_WAIT_S), then reads them from a fresh ``dest()``. Blocks;
    read-only; raises what the readers raise."""
    suspects = Keys.of(first)
    outcome = Settled(unsettled=suspects, suspects=len(suspects))
    with StoreReader(db) as store:
        while outcome.unsettled and outcome.rounds < SETTLE_ROUNDS:
            outcome.rounds += 1
            keys = outcome.unsettled
            with store.transaction():
                head = head_seq(store.conn)
                mine = read_store(store, keys, target)
            _wait_for(position, head, clock)
            reader = dest()
            try:
                theirs = read_destination(reader, keys, target)
            finally:
                close = getattr(reader, "close", None)
                if close is not None:
                    close()
            outcome.unsettled = Keys.of(compare_keys(target, mine, theirs, keys))
    return outcome


def _wait_for(position: Callable[[], SinkPosition | None], seq: int, clock: Clock) -> None:
    """Until the sink's watermark reaches ``seq`` or SETTLE_WAIT_S passed (then the round compares
    anyway: what still differs is left to the fence)."""
    deadline = clock.monotonic() + SETTLE_WAIT_S
    while clock.monotonic() < deadline:
        current = position()
        mark = current.watermark() if current is not None else None
        if mark is not None and mark.seq >= seq:
            return
        clock.sleep(0.02)


def with_sample(db: Path, keys: Keys, sample: int) -> Keys:
    """``keys`` plus ``sample`` random entity ids of the store. Raises CaptureError."""
    if sample <= 0:
        return keys
    conn = open_store(db, readonly=True)
    try:
        ids = {int(r[0]) for r in conn.execute("SELECT id FROM entities ORDER BY random() LIMIT ?", (sample,))}
    finally:
        conn.close()
    return Keys(keys.entities | ids, keys.relations)


def recheck(target: str, db: Path, dest: KeyedReader, keys: Keys) -> list[str]:
    """Under the fence (store and destination both still): ``keys`` compared field by field, one line
    per key that differs. Closes ``dest``. Raises what the readers raise."""
    try:
        if not keys:
            return []
        with StoreReader(db) as store:
            mine = read_store(store, keys, target)
        theirs = read_destination(dest, keys, target)
    finally:
        close = getattr(dest, "close", None)
        if close is not None:
            close()
    return [str(m) for m in compare_keys(target, mine, theirs, keys)]
