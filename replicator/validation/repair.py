"""``validate --repair``: re-emit mismatched keys through the pipeline as fresh changelog rows.

:func:`plan_repair` (pure) decides WHICH keys go back through capture:

* an entity missing or different in a destination -> ``resync("entities", ids)``; an entity whose
  vector is missing or wrong -> ``resync("embeddings", ids)`` when the store keeps its embedding,
  else ``resync("entities", ids)`` (the sink embeds the entity's text);
* a relation missing or different -> ``resync("relations", ids)``;
* a key only the destination holds (extra) -> ``resync_deleted(table, ids, before_images)`` with the
  destination's copy as the before image (the store has no row to image), so the sinks delete it;
  the same extra id found in two destinations is re-emitted once.

:func:`apply_repair` calls ``replicator.capture.resync.resync(conn, table, ids)`` and
``resync_deleted(conn, table, ids, before_images)`` (one before image per id, in the changelog's
image format). Keys whose store row vanished since validation are skipped by resync (capture's
contract).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replicator.capture.install import read_state
from replicator.capture.resync import resync, resync_deleted
from replicator.capture.storefile import open_store
from replicator.validation.diff import Mismatch
from replicator.validation.errors import MigrateError
from replicator.validation.model import Entity, Relation

_TABLE = {"entity": "entities", "relation": "relations"}


@dataclass
class RepairPlan:
    """Keys to re-emit per table, and keys to re-emit as deletes with their before images."""

    resync: dict[str, list[int]] = field(default_factory=dict)
    resync_deleted: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    unrepairable: list[str] = field(default_factory=list)  # extras without a destination copy

    @property
    def empty(self) -> bool:
        return not self.resync and not self.resync_deleted

    def to_dict(self) -> dict[str, Any]:
        return {
            "resync": self.resync,
            "resync_deleted": {t: sorted(images) for t, images in self.resync_deleted.items()},
            "unrepairable": self.unrepairable,
        }


def plan_repair(mismatches: Iterable[Mismatch], store_embedding_ids: Iterable[int]) -> RepairPlan:
    """Which keys to resync (pure). ``store_embedding_ids``: entities the store keeps a vector for."""
    with_vector = set(store_embedding_ids)
    resync: dict[str, set[int]] = {}
    deleted: dict[str, dict[int, dict[str, Any]]] = {}
    plan = RepairPlan()
    for m in mismatches:
        if m.kind == "embedding":
            table = "embeddings" if m.key in with_vector else "entities"
            resync.setdefault(table, set()).add(m.key)
        elif m.problem == "extra":
            copy = m.destination
            if not isinstance(copy, Entity | Relation):
                plan.unrepairable.append(f"{m.target} {m.kind} {m.key}: extra, but its destination copy was not read")
                continue
            deleted.setdefault(_TABLE[m.kind], {})[m.key] = copy.to_row_image()
        else:
            resync.setdefault(_TABLE[m.kind], set()).add(m.key)
    plan.resync = {t: sorted(ids) for t, ids in sorted(resync.items())}
    plan.resync_deleted = dict(sorted(deleted.items()))
    return plan


def apply_repair(store_path: Path, plan: RepairPlan, *, timeout_s: float = 5.0) -> dict[str, int]:
    """Write the plan as changelog rows (capture's resync functions). Returns rows per call kind.
    Blocks (one write transaction per table). Raises MigrateError when capture is not installed."""
    conn = open_store(store_path, timeout_s=timeout_s)
    try:
        if not read_state(conn).installed:
            raise MigrateError(
                f"capture is not installed in {store_path}",
                hint="repair re-emits keys through the changelog: run `replicator source install` first",
            )
        done = {"resync": 0, "resync_deleted": 0}
        for table, ids in plan.resync.items():
            resync(conn, table, ids)
            done["resync"] += len(ids)
        for table, images in plan.resync_deleted.items():
            ids = sorted(images)
            resync_deleted(conn, table, ids, [images[i] for i in ids])
            done["resync_deleted"] += len(images)
        return done
    finally:
        conn.close()
