"""What a destination raises to tell the sink runner how to go on (design §7), one class per kind of
failure (``replicator.errors``). Every destination raises these, so the runner treats them alike:

* ``DestinationUnavailable`` (retryable): the server is down, restarting, overloaded or timed out.
* ``DestinationRefused`` (fatal for this sink): the server answers but refuses this sink's work until
  an operator acts: credentials wrong or expired, a role revoked, the database or collection missing,
  the embedding model unloadable. Nothing about it depends on the events.
* ``PoisonEvent`` (poison): the batch holds an event that cannot be applied, ever.

An exception that is none of these is treated as fatal by the runner, never as poison.
"""

from __future__ import annotations

from replicator.errors import Fatal, Poison, Retryable


class DestinationUnavailable(Retryable):
    """The destination cannot be reached or timed out. Nothing of the batch is known to be lost; the
    runner pauses its partitions and retries the same batch with capped backoff (``apply`` is
    idempotent)."""


class DestinationRefused(Fatal):
    """The destination refuses this sink's work whatever the events hold (the message names the
    cause, the hint the fix). The runner stops consuming, commits nothing, says so once, and re-checks
    the destination until the cause is gone."""


class PoisonEvent(Poison):
    """One event of the batch cannot be applied, ever.

    ``index`` is its position in ``Batch.events`` when the destination's pure planner found it by its
    content alone (an envelope that breaks the rules): the content is the proof, and the runner sets
    that event aside at once. ``index`` is None when the server refused the batch for a value it holds:
    the runner then isolates the event and sets it aside only once the rest of the batch applies
    without it (a failure of the destination must never look like a bad event)."""

    def __init__(self, index: int | None, reason: str, hint: str = "") -> None:
        where = "an event of the batch" if index is None else f"event {index} of the batch"
        super().__init__(
            f"{where} cannot be applied: {reason}",
            hint=hint or "it goes to the dead-letter topic; fix the producer or the destination, then replay it",
        )
        self.index = index
        self.reason = reason

    @property
    def by_content(self) -> bool:
        """True when the event's content alone proves it bad (found by a pure planner)."""
        return self.index is not None
