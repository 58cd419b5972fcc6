"""``replicator rollback``: undo a cutover, or resolve an interrupted one, without losing a write.

Fail-safe order, the cutover's reversed: first caxton.yaml names the store again (memory.backend
only; other edits made since stay), while the store still refuses writes; then the refusal is
dropped. A crash between the two leaves the runtime unable to write anywhere, never writing to two
places. Before anything is switched back, whenever the runtime may have written to the new backend
(the cutover completed, or got as far as writing caxton.yaml), the destinations are compared with
the store in full: the store has none of those writes, and going back would silently drop them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from replicator.cutover import config, fence, state
from replicator.errors import Fatal, ReplicatorError


class RollbackRefused(Fatal):
    """Rollback would lose writes the new backend took after the cutover (or could not rule it out)."""


#: Given the cutover's target (neo4j, qdrant, hybrid): every difference between the store and the
#: destination(s), one line each. Raises when a destination cannot be read.
Divergence = Callable[[str], list[str]]

_SHOWN: Final = 10


def rollback(db: Path, config_path: Path | None, *, divergence: Divergence | None = None) -> list[str]:
    """Undo a cutover (or resolve an interrupted one): caxton.yaml names the store again and the store
    takes writes again. Idempotent. Returns what was done.

    With ``divergence`` (the CLI's default) the destinations are first compared with the store when
    the runtime may have written to them; any difference -- or a destination that cannot be read --
    raises RollbackRefused, changing nothing. ``divergence=None`` is the operator's explicit choice
    to discard such writes (``--discard-new-writes``). Raises ConfigError for a caxton.yaml that
    cannot be read, StateError for an unreadable state file, CaptureError for the store."""
    st = state.load(db)
    if st.state == "cutting_over" and st.process_alive():
        raise ReplicatorError(f"a cutover is running (pid {st.pid})", hint="wait for it, or stop it first")
    path = config_path or (Path(st.config) if st.config else None)
    # Only a cutover that reached its switch step may have written caxton.yaml; a backup left by
    # anything else is not this cutover's and is never restored.
    reached_switch = st.state == "cut_over" or (st.step == "switch" and st.state in ("cutting_over", "failed"))
    switched = reached_switch and path is not None and config.switched(path)
    if divergence is not None and (st.state == "cut_over" or switched):
        _refuse_if_diverged(st, divergence)
    done: list[str] = []
    if reached_switch and path is not None:
        restored = config.restore_backend(path)
        if restored is not None and switched:
            done.append(f"{path}: memory.backend is {restored} again (nothing else in the file changed)")
    if fence.remove_refusal(db):
        done.append("the store takes writes again (refusal triggers removed)")
    state.save(db, st, state="rolled_back" if st.state != "replicating" else "replicating", step=None, pid=None)
    return done or ["nothing to undo"]


def _refuse_if_diverged(st: state.MigrationState, divergence: Divergence) -> None:
    target = st.target or "hybrid"
    discard = "--discard-new-writes"
    try:
        problems = divergence(target)
    except Exception as exc:  # any reason the check cannot run: the operator must decide, knowingly
        raise RollbackRefused(
            f"cannot check whether {target} took writes since the cutover at seq {st.final_seq}: {exc}",
            hint=f"make {target} reachable (same flags as the cutover), or pass {discard} to roll back "
            "anyway: writes made to it since the cutover are then lost",
        ) from exc
    if problems:
        shown = "\n  ".join(problems[:_SHOWN]) + (
            f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        )
        raise RollbackRefused(
            f"{target} differs from the store, which was cut over to it at seq {st.final_seq}:"
            f"\n  {shown}\nthe runtime has written to {target}; the store does not have those writes",
            hint=f"`replicator diff --target neo4j|qdrant --json` lists them; copy what must be kept into the "
            f"store, or pass {discard} to roll back and lose them",
        )
