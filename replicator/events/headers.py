"""The Kafka headers the source puts on every record, and how a consumer reads them back (design §2).

* ``replicator.table``: entities | relations | embeddings | heartbeat.
* ``replicator.seq``: the change's seq (decimal ASCII). A tombstone (null value: the record left for
  a key once compaction removed its ``d`` event) carries the seq of that delete, which only this
  header can tell: for tombstones it is not a convenience but the delete's seq.
* ``replicator.snapshot``: on heartbeats, the seq of the snapshot the stream follows (the changelog
  head when it was read). Sinks keep the highest one seen; once their watermark reaches it, a row
  whose seq is older was not in that snapshot: deleted while capture was out (docs/design.md §6).

Pure. Malformed or missing headers read as None: the value, when there is one, stays the truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

TABLE: Final = "replicator.table"
SEQ: Final = "replicator.seq"
SNAPSHOT: Final = "replicator.snapshot"

Headers = list[tuple[str, bytes]]


def make(table: str, seq: int, snapshot_seq: int | None = None) -> Headers:
    """The headers of one record (``snapshot_seq`` only when known, on heartbeats)."""
    out = [(TABLE, table.encode()), (SEQ, str(seq).encode())]
    if snapshot_seq is not None:
        out.append((SNAPSHOT, str(snapshot_seq).encode()))
    return out


@dataclass(frozen=True)
class Parsed:
    table: str | None = None
    seq: int | None = None
    snapshot_seq: int | None = None


NO_HEADERS: Final = Parsed()


def _int(raw: bytes | str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def parse(headers: Mapping[str, bytes | str | None] | Sequence[tuple[str, bytes | str | None]] | None) -> Parsed:
    """Read the three headers of a consumed record (``Message.headers()``; None when it has none)."""
    found: dict[str, bytes | str | None] = dict(headers or {})
    table = found.get(TABLE)
    return Parsed(
        table=table.decode(errors="replace") if isinstance(table, bytes) else table,
        seq=_int(found.get(SEQ)),
        snapshot_seq=_int(found.get(SNAPSHOT)),
    )
