"""Setting poison events aside (design §7): apply a batch and, when the destination refuses part of
it, find exactly the events it refuses, prove them bad, dead-letter them and apply the rest.

An event is poison only when the proof holds:

* its content alone: a destination's pure planner names it (``PoisonEvent.by_content``); or
* the rest of its batch applying: the server refused the event alone (isolated by halving), and a
  write of other changes of the same batch succeeded. The events after a suspect in its partition
  are applied too, but with the position held at the suspect's offset, so no stored position ever
  claims the suspect before its dead letter is acknowledged (the per-row seqs make applying them
  before it harmless). A batch with no other change is proven by a position-only write, once: a
  second lone refusal with no change applied in between is the destination's fault, not the data's.

A destination that refuses every change of a batch has proven nothing about the events: that raises
DestinationRefused (fatal), and nothing is set aside. Retryable and fatal errors from ``apply`` pass
through unchanged. The search is a loop over an explicit stack: at most 2n + 2 applies for n events,
whatever the batch holds, and no recursion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from replicator.errors import Kind, kind_of
from replicator.position import PartitionKey
from replicator.sinks.batch import Batch, Event, set_aside
from replicator.sinks.errors import DestinationRefused, PoisonEvent

Apply = Callable[[Batch], None]
DeadLetter = Callable[[Event, str], None]
_Key = tuple[PartitionKey, int]


@dataclass(frozen=True)
class Outcome:
    """What applying a batch did: events dead-lettered, changes applied by writes that succeeded, and
    whether a lone change was set aside on a position-only proof (``weak``)."""

    dead_lettered: int
    accepted: int
    weak: bool = False


def apply_isolating(batch: Batch, apply: Apply, dead_letter: DeadLetter, allow_weak: bool = True) -> Outcome:
    """Apply ``batch`` through ``apply``, setting aside (``dead_letter``, acknowledged before any
    position covers it) exactly the events proven poison. ``allow_weak=False`` refuses the position-only
    proof (the previous lone refusal is not confirmed yet). Blocks on the destination. Raises whatever
    ``apply`` raises that is not poison, and DestinationRefused when the proof fails."""
    try:
        apply(batch)
    except Exception as exc:
        if kind_of(exc) is not Kind.POISON:
            raise
        search = _Search(batch, apply, dead_letter)
        search.run(exc)
        return search.finish(allow_weak)
    return Outcome(0, len(batch.changes()))


def _is_change(event: Event) -> bool:
    return event.record is not None and not event.is_heartbeat


def _refused(what: str, error: object) -> DestinationRefused:
    return DestinationRefused(
        f"the destination {what}, so the refusal is not about the events: {error}",
        hint="nothing was dead-lettered or committed; fix what the error names (rights, schema, "
        "configuration of the destination); the sink re-checks and resumes by itself",
    )


class _Search:
    def __init__(self, batch: Batch, apply: Apply, dead_letter: DeadLetter) -> None:
        self.batch = batch
        self.apply = apply
        self.dead_letter = dead_letter
        self.held: dict[PartitionKey, int] = {}  # partition -> offset of its first unproven suspect
        self.suspects: list[tuple[Event, str]] = []
        self.aside: set[_Key] = set()  # (partition, offset) of every event set aside or suspected
        self.accepted = 0
        self.dead = 0

    def _try(self, events: Sequence[Event]) -> Exception | None:
        """Apply ``events`` with the held caps. None when they applied, the poison error when refused;
        any other error is raised."""
        try:
            self.apply(Batch(events, self.batch.partitions, dict(self.held)))
        except Exception as exc:
            if kind_of(exc) is not Kind.POISON:
                raise
            return exc
        self.accepted += sum(1 for e in events if _is_change(e))
        return None

    def _set_aside(self, event: Event, reason: str) -> None:
        self.dead_letter(event, reason)
        self.aside.add((event.where, event.offset))
        self.dead += 1

    def run(self, first: Exception) -> None:
        """Halve refused segments, earliest first, until each refusal is one event."""
        stack: list[tuple[list[Event], Exception | None]] = [(list(self.batch.events), first)]
        while stack:
            events, error = stack.pop()
            if error is None and (error := self._try(events)) is None:
                continue
            if isinstance(error, PoisonEvent) and error.index is not None and 0 <= error.index < len(events):
                i = error.index
                self._set_aside(events[i], error.reason)  # its content is the proof
                stack.append(([set_aside(events[i]), *events[i + 1 :]], None))
                if i:
                    stack.append((events[:i], None))
                continue
            if len(events) > 1:
                middle = len(events) // 2
                stack.append((events[middle:], None))
                stack.append((events[:middle], None))
                continue
            suspect = events[0]
            if not _is_change(suspect):
                raise _refused("refused a write that carries no change", error)
            reason = error.message if isinstance(error, PoisonEvent) else f"{type(error).__name__}: {error}"
            self.suspects.append((suspect, reason))
            self.aside.add((suspect.where, suspect.offset))
            self.held.setdefault(suspect.where, suspect.offset)

    def finish(self, allow_weak: bool) -> Outcome:
        """Prove the suspects, dead-letter them, then write the held partitions' positions past them."""
        if not self.suspects:
            return Outcome(self.dead, self.accepted)
        weak = False
        if self.accepted == 0:
            first = self.suspects[0][1]
            if len(self.suspects) > 1:
                raise _refused(f"refused each of the {len(self.suspects)} changes of a batch alone", first)
            if not allow_weak:
                raise _refused("refused another lone change with none applied since the last one set aside", first)
            self._prove_by_position_write(first)
            weak = True
        for event, reason in self.suspects:
            self._set_aside(event, reason)
        # Everything from each suspect on was applied (under the cap) or set aside: only the position
        # and the heartbeats are left to write, so every other event goes blank.
        rest = [
            e if e.is_heartbeat else set_aside(e)
            for e in self.batch.events
            if e.offset >= self.held.get(e.where, e.offset + 1)
        ]
        try:
            self.apply(Batch(rest, self.batch.partitions))
        except Exception as exc:
            if kind_of(exc) is Kind.POISON:
                raise _refused("refused a position-only write right after applying changes", exc) from exc
            raise
        return Outcome(self.dead, self.accepted, weak)

    def _prove_by_position_write(self, first: str) -> None:
        try:
            self.apply(Batch([], self.batch.partitions))
        except Exception as exc:
            if kind_of(exc) is Kind.POISON:
                raise _refused(f"refused a position-only write after refusing a change ({first})", exc) from exc
            raise
