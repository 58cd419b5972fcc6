"""What a destination's ``apply`` raises to tell the sink runner how to go on (design §7).

Defined here until the runner (``replicator/sinks/runner.py``) exists; the runner imports them from
this module so every destination raises the same classes.
"""

from __future__ import annotations

from replicator.errors import Poison, Retryable


class DestinationUnavailable(Retryable):
    """The destination cannot be reached or timed out. Nothing of the batch is known to be lost; the
    runner pauses its partitions and retries the same batch with capped backoff (``apply`` is
    idempotent)."""


class PoisonEvent(Poison):
    """One event of the batch cannot be applied, ever (malformed record, a payload the destination
    rejects). ``index`` is its position in ``Batch.events``, or None when the destination only knows
    the batch holds one: the runner then splits the batch to isolate it and sends it to the DLQ."""

    def __init__(self, index: int | None, reason: str, hint: str = "") -> None:
        where = "an event of the batch" if index is None else f"event {index} of the batch"
        super().__init__(
            f"{where} cannot be applied: {reason}",
            hint=hint or "it goes to the dead-letter topic; fix the producer or the destination, then replay it",
        )
        self.index = index
        self.reason = reason
