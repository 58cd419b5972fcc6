"""``replicator rollback``: undo a cutover, or resolve an interrupted one, without losing a write.

Fail-safe order, the cutover's reversed: first caxton.yaml names the store again (memory.backend
only; other edits made since stay), while the store still refuses writes; then the refusal is
dropped. A crash between the two leaves the runtime unable to write anywhere, never writing to two
places. Before anything is switched back, whenever the runtime may have written to the new backend
(the cutover completed, or got as far as writing caxton.yaml), the destinations are compared with
the store in full: the store has none of those writes, and going back would silently drop them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol, TypeVar

from replicator.cutover import config, fence, state
from replicator.errors import Fatal, ReplicatorError, Retryable, listed


class RollbackRefused(Fatal):
    """Rollback would lose writes the new backend took after the cutover (or could not rule it out)."""


class RollbackAborted(Retryable):
    """The reverse stream did not catch up within --catch-up (nothing fenced), or did not drain within
    --max-pause (the fence lifted): Neo4j takes writes again, nothing changed."""


class ReverseControl(Protocol):
    """The reverse stream as rollback drives it (``replicator.reverse.control``). Each call blocks
    briefly and raises what its server raises."""

    def active(self) -> bool: ...  # capture is on: Neo4j's writes flow back to the store

    def head_seq(self) -> int: ...  # the seq of Neo4j's last captured transaction (not fenced)

    def fence(self, message: str) -> int: ...  # refuse the runtime's writes in Neo4j; the head seq then

    def unfence(self) -> None: ...

    def applied(self) -> int: ...  # the seq the store has applied

    def set_aside(self) -> list[str]: ...  # Neo4j's changes the store refused, not replaced since: one line each

    def finish(self) -> None: ...  # capture off, the fence kept


#: Given the cutover's target (neo4j, qdrant, hybrid): every difference between the store and the
#: destination(s), one line each. Raises when a destination cannot be read.
Divergence = Callable[[str], list[str]]

_SHOWN: Final = 10
_LINES: Final = "\n  "  # one item per indented line
_T = TypeVar("_T")
#: How long rollback waits, before it fences Neo4j, for the store to apply the changelog Neo4j had
#: when it started (the runtime still writes meanwhile: no pause).
CATCH_UP_S: Final = 60.0


def rollback(db: Path, config_path: Path | None, *, divergence: Divergence | None = None,
             reverse: ReverseControl | None = None, max_pause_s: float = 3.0,
             catch_up_s: float = CATCH_UP_S) -> list[str]:  # fmt: skip
    """Undo a cutover (or resolve an interrupted one): caxton.yaml names the store again and the store
    takes writes again. Idempotent. Returns what was done.

    With ``divergence`` (the CLI's default) the destinations are first compared with the store when
    the runtime may have written to them; any difference -- or a destination that cannot be read --
    raises RollbackRefused, changing nothing. ``divergence=None`` is the operator's explicit choice
    to discard such writes (``--discard-new-writes``). Raises ConfigError for a caxton.yaml that
    cannot be read, StateError for an unreadable state file, CaptureError for the store.

    With ``reverse`` active (Neo4j's writes flow back: docs/reverse.md), nothing is compared: once the
    store applied the changelog Neo4j had at the start (at most ``catch_up_s``, else RollbackAborted,
    nothing fenced), Neo4j's writers are fenced, the store drains the rest (at most ``max_pause_s``,
    else RollbackAborted, nothing changed), then caxton.yaml and the store are switched back as above."""
    st = state.load(db)
    if st.state == "cutting_over" and st.process_alive():
        raise ReplicatorError(f"a cutover is running (pid {st.pid})", hint="wait for it, or stop it first")
    if st.state == "rolling_back" and st.process_alive():
        raise ReplicatorError(f"a rollback is running (pid {st.pid})", hint="wait for it, or stop it first")
    path = config_path or (Path(st.config) if st.config else None)
    cut_over = st.state in ("cut_over", "rolling_back")
    # Only a cutover that reached its switch step may have written caxton.yaml; a backup left by
    # anything else is not this cutover's and is never restored.
    reached_switch = cut_over or (st.step == "switch" and st.state in ("cutting_over", "failed"))
    switched = reached_switch and path is not None and config.switched(path)
    done: list[str] = []
    found = st.describe()
    st, fenced_at, drained_to, by = _bring_back(db, st, done, divergence=divergence, reverse=reverse,
                                                bounds=(max_pause_s, catch_up_s), cut_over=cut_over,
                                                switched=switched)  # fmt: skip
    if reached_switch and path is not None:
        restored = config.restore_backend(path)
        if restored is not None and switched:
            done.append(f"{path}: memory.backend is {restored} again (nothing else in the file changed)")
    if fence.remove_refusal(db):
        done.append("the store takes writes again (refusal triggers removed)")
    if fenced_at is not None and reverse is not None:
        done.append(f"write pause {1000 * (time.monotonic() - fenced_at):.0f} ms (Neo4j fenced -> store takes writes)")
        reverse.finish()
        done.append("Neo4j: capture off, writes other than the forward sink's refused (docs/reverse.md)")
    if st.state == "replicating":
        state.save(db, st, step=None, pid=None)
    else:
        state.save(db, st, state="rolled_back", step=None, pid=None, rolled_back_at_ms=time.time_ns() // 1_000_000,
                   rolled_back_from=found, rolled_back_by=by, reverse_seq=drained_to)  # fmt: skip
    return done or ["nothing to undo"]


def _bring_back(
    db: Path, st: state.MigrationState, done: list[str], *, divergence: Divergence | None,
    reverse: ReverseControl | None, bounds: tuple[float, float], cut_over: bool, switched: bool,
) -> tuple[state.MigrationState, float | None, int | None, str]:  # fmt: skip
    """How the destinations' writes come back, before anything is switched: finish a drain an
    interrupted rollback completed, drain the reverse stream, or compare (or discard). Returns the
    state, when Neo4j was fenced (monotonic; None if not now), the seq drained to and the way."""
    max_pause_s, catch_up_s = bounds
    if st.state == "rolling_back" and st.step == "switch_back" and st.reverse_seq is not None:
        # The drain had completed (the step is recorded after it): finish it. Comparing instead would
        # find the runtime's writes to the store since caxton.yaml was switched back and refuse.
        done.append(f"the interrupted rollback had drained Neo4j to changelog seq {st.reverse_seq}: finishing it")
        if reverse is not None:
            _reachable(reverse.finish)
        return st, None, st.reverse_seq, "drain_reverse"
    if cut_over and reverse is not None and _reverse_active(reverse):
        _catch_up(reverse, catch_up_s)
        keep = divergence is not None  # --discard-new-writes: what the store set aside may go
        if keep and (lost := reverse.set_aside()):
            raise _set_aside_refusal(lost, "nothing was fenced and nothing changed")
        st, fenced_at, drained_to = _drain_reverse(db, st, reverse, max_pause_s, keep=keep)
        done.append(f"Neo4j fenced at changelog seq {drained_to}; the store applied all of it")
        if not keep and (lost := reverse.set_aside()):
            done.append(f"lost (--discard-new-writes): {len(lost)} change(s) Neo4j took that the store set aside: "
                        + listed(lost, _SHOWN, "; "))  # fmt: skip
        return st, fenced_at, drained_to, "drain_reverse"
    if cut_over or switched:
        if divergence is not None:
            _refuse_if_diverged(st, divergence)
        return st, None, None, "compare" if divergence is not None else "discard"
    return st, None, None, "never_switched"


def _reverse_active(reverse: ReverseControl) -> bool:
    return _reachable(reverse.active)


def _reachable(ask: Callable[[], _T]) -> _T:
    """``ask()`` of Neo4j before anything is fenced; RollbackRefused naming it when it cannot answer."""
    try:
        return ask()
    except Exception as exc:  # Neo4j unreachable: the operator must decide, knowingly
        raise RollbackRefused(
            f"cannot reach Neo4j to drain its writes back into the store: {exc}",
            hint="make Neo4j reachable (same flags as `replicator reverse run`) and roll back again",
        ) from exc


def _catch_up(reverse: ReverseControl, catch_up_s: float) -> None:
    """Wait until the store applied Neo4j's changelog as it is now, at most ``catch_up_s``, so that the
    pause holds only what the runtime writes meanwhile; RollbackAborted (nothing fenced) past it."""
    head, started = _reachable(reverse.head_seq), time.monotonic()
    while (applied := reverse.applied()) < head:
        if time.monotonic() - started > catch_up_s:
            raise RollbackAborted(
                f"the store applied Neo4j's changes up to seq {applied} of {head} and did not catch up within "
                f"--catch-up {catch_up_s:g}s; nothing was fenced and nothing changed",
                hint="check that `replicator reverse run` is running (`replicator status` shows its lag), "
                "then roll back again",
            )
        time.sleep(0.02)


def _drain_reverse(
    db: Path, st: state.MigrationState, reverse: ReverseControl, max_pause_s: float, *, keep: bool
) -> tuple[state.MigrationState, float, int]:
    """Fence Neo4j's writers, then wait until the store applied everything Neo4j took, at most
    ``max_pause_s``; on time out lift the fence and raise RollbackAborted (still cut over). With
    ``keep``, a change the store set aside meanwhile lifts the fence too: RollbackRefused. Returns
    the state, when the fence was taken (monotonic) and the seq drained to."""
    st = state.save(db, st, state="rolling_back", step="fence_new_backend", pid=os.getpid())
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    final = reverse.fence(f"memory store moved back to embedded at {at}; reload caxton.yaml")
    fenced_at = time.monotonic()
    st = state.save(db, st, step="drain_reverse")
    while (applied := reverse.applied()) < final:
        if time.monotonic() - fenced_at > max_pause_s:
            reverse.unfence()
            state.save(db, st, state="cut_over", step=None, pid=None)
            raise RollbackAborted(
                f"the store applied Neo4j's changes up to seq {applied}, not {final}, within --max-pause "
                f"{max_pause_s:g}s; Neo4j takes writes again and nothing changed",
                hint="check that `replicator reverse run` is running (`replicator status` shows its lag), "
                "then roll back again",
            )
        time.sleep(0.02)
    if keep and (lost := reverse.set_aside()):
        reverse.unfence()
        state.save(db, st, state="cut_over", step=None, pid=None)
        raise _set_aside_refusal(lost, "Neo4j takes writes again and nothing changed")
    st = state.save(db, st, step="switch_back", reverse_seq=final)
    return st, fenced_at, final


def _set_aside_refusal(lost: list[str], outcome: str) -> RollbackRefused:
    """Changes Neo4j took that the store refused (reverse/aside.py): going back would lose them."""
    return RollbackRefused(
        f"{len(lost)} change(s) Neo4j took are set aside, not in the store (its constraints refused them):"
        f"\n  {listed(lost, _SHOWN, _LINES)}\n{outcome}",
        hint="fix each in Neo4j so that the store can hold it (a name another entity holds: rename or merge "
        "one of the two, or delete one); `replicator reverse run` tries what it set aside again whenever the "
        "store changes, and `replicator status` lists what is left. Or pass --discard-new-writes to roll back "
        "without them",
    )


def resolution(st: state.MigrationState) -> str:
    """The command that resolves an interrupted rollback (for ``replicator status``), else ''."""
    if st.state == "rolling_back" and not st.process_alive():
        return "replicator rollback --db <db>   (runs the interrupted rollback again; each step is idempotent)"
    return ""


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
        raise RollbackRefused(
            f"{target} differs from the store, which was cut over to it at seq {st.final_seq}:"
            f"\n  {listed(problems, _SHOWN, _LINES)}"
            f"\nthe runtime has written to {target}; the store does not have those writes",
            hint=f"`replicator diff --target neo4j|qdrant --json` lists them; copy what must be kept into the "
            f"store, or pass {discard} to roll back and lose them",
        )
