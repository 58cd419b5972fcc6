"""Per row, publish or park: the source's policy for rows no event can carry (docs/source.md, "Size
limits and parked rows"). Pure apart from the callbacks it is given.

A row is parked, with a reason naming it, when converting it raises (a value no event carries exactly:
``Unfit``, or an image the converter cannot read) or when its messages (key + value + headers) are
larger than the event limit (``KafkaSettings.event_limit``). A transaction takes rows in seq order up
to a byte budget; a parked row is passed over (the position moves past it once it is parked in the
store), and a row that cannot be parked yet (the store's write lock is held) ends the transaction
before it, so that it is decided again at the next poll. Nothing is ever skipped unparked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from replicator.capture.parked import Why
from replicator.errors import Retryable, SchemaError
from replicator.source.convert import ChangelogRow, Conversion, Message, Unfit
from replicator.source.metrics import SourceMetrics
from replicator.source.store import StoreReader

#: How long parking a snapshot row may wait for the write lock (the snapshot runs once; a stream row
#: waits at most ``delete_busy_timeout_ms`` and is decided again at the next poll).
SNAPSHOT_PARK_TIMEOUT_MS: Final = 2000


class StoreBusy(Retryable):
    """The store's write lock stayed held while a snapshot row had to be parked: retried like an outage."""


@dataclass(frozen=True)
class Verdict:
    """What to do with one row: publish ``conversion`` (``reason`` None) or park it for ``reason``."""

    conversion: Conversion | None
    size: int | None
    reason: str | None


def message_bytes(messages: Sequence[Message]) -> int:
    """The bytes Kafka counts for these records, besides its framing: keys, values and headers."""
    total = 0
    for m in messages:
        total += len(m.key) + (len(m.value) if m.value is not None else 0)
        for k, v in m.headers:
            total += len(k) + len(v)
    return total


def judge(convert: Callable[[], Conversion], limit: int, max_message_bytes: int) -> Verdict:
    """Convert one row and decide. Never raises for the row's content: a failure becomes the reason."""
    try:
        conversion = convert()
    except (Unfit, SchemaError) as exc:
        return Verdict(None, None, exc.message)
    except (ValueError, TypeError, KeyError, UnicodeError) as exc:
        return Verdict(None, None, f"its image cannot be converted ({type(exc).__name__}: {exc})")
    size = message_bytes(conversion.messages)
    if size > limit:
        reason = (
            f"its event is {size} bytes, over the limit of {limit} bytes (max_message_bytes "
            f"{max_message_bytes} minus Kafka's framing)"
        )
        return Verdict(None, size, reason)
    return Verdict(conversion, size, None)


@dataclass
class Taken:
    """The rows one transaction covers (published or parked, in seq order) and what it carries."""

    rows: list[ChangelogRow] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    parked: int = 0


def take(
    rows: Sequence[ChangelogRow],
    decide: Callable[[ChangelogRow], Verdict],
    park: Callable[[ChangelogRow, Verdict], bool],
    budget: int,
) -> Taken:
    """The longest prefix of ``rows`` one transaction can cover: events up to ``budget`` bytes (at
    least one row), parked rows passed over once ``park`` stored them; stops before a row ``park``
    could not store yet."""
    out = Taken()
    used = 0
    for row in rows:
        verdict = decide(row)
        if verdict.reason is not None:
            if not park(row, verdict):
                break
            out.rows.append(row)
            out.parked += 1
            continue
        assert verdict.conversion is not None and verdict.size is not None
        if out.messages and used + verdict.size > budget:
            break
        out.rows.append(row)
        out.messages.extend(verdict.conversion.messages)
        out.warnings.extend(verdict.conversion.warnings)
        used += verdict.size
    return out


class Parker:
    """Parks rows in the store for the source daemon, and counts and logs each (``log`` takes the
    fields of one ``row_parked`` line). Not thread-safe: the daemon's loop owns it."""

    def __init__(
        self, reader: StoreReader, metrics: SourceMetrics, limit: int, busy_timeout_ms: int, log: Callable[..., None]
    ) -> None:
        self.reader = reader
        self.metrics = metrics
        self.limit = limit
        self.busy_timeout_ms = busy_timeout_ms
        self.log = log

    def _why(self, verdict: Verdict) -> Why:
        assert verdict.reason is not None
        return Why(verdict.reason, verdict.size, self.limit)

    def change(self, row: ChangelogRow, verdict: Verdict) -> bool:
        """Park a changelog row before the transaction passing it commits; False if the lock is held."""
        if not self.reader.park_change(row.seq, self._why(verdict), self.busy_timeout_ms, row.table):
            return False
        self._parked(row.table, row.row_id, row.seq, row.op, verdict)
        return True

    def snapshot_row(self, table: str, columns: tuple[str, ...], row_id: int, read_seq: int, verdict: Verdict) -> None:
        """Park a row the snapshot read. Raises StoreBusy when the write lock stays held (the chunk is
        then read again from the committed cursor)."""
        if not self.reader.park_snapshot_row(
            table, columns, row_id, read_seq=read_seq, why=self._why(verdict), busy_timeout_ms=SNAPSHOT_PARK_TIMEOUT_MS
        ):
            raise StoreBusy(
                f"the store's write lock stayed held for {SNAPSHOT_PARK_TIMEOUT_MS} ms while parking {table} "
                f"id {row_id}",
                hint="the snapshot retries; a long write transaction or a cutover fence holds the store",
            )
        self._parked(table, row_id, read_seq, "r", verdict)

    def _parked(self, table: str, row_id: int, seq: int, op: str, verdict: Verdict) -> None:
        self.metrics.parked.labels(table).inc()
        self.metrics.parked_rows.inc()
        self.log(
            table=table, id=row_id, seq=seq, op=op, size=verdict.size if verdict.size is not None else "-",
            limit=self.limit, reason=verdict.reason, fix="replicator source parked / retry-parked (docs/source.md)",
        )  # fmt: skip
