"""The change-event envelope (design §2, Debezium's): the one builder of ``source`` and of the change
record around a row image. The source's converter and every test stand-in build events here, so
a sink test sees the envelope the real source publishes. Pure.
"""

from __future__ import annotations

from typing import Any, Final

from replicator import __version__

#: ``source.connector`` of every event this replicator publishes.
CONNECTOR: Final = "caxton-sqlite"

Record = dict[str, Any]


def source_record(store_id: str, table: str, seq: int, ts_ms: int, snapshot: str = "false") -> Record:
    """``source``: which store and table, the changelog seq (a snapshot's read head for ``op=r``), and
    ``snapshot`` ``false`` (stream), ``true`` or ``last`` (the final snapshot row)."""
    return {
        "connector": CONNECTOR,
        "version": __version__,
        "store": store_id,
        "table": table,
        "seq": seq,
        "snapshot": snapshot,
        "ts_ms": ts_ms,
    }


def change_record(op: str, before: object, after: object, source: Record, ts_ms: int) -> Record:
    """A change event: ``op`` c|u|d|r, the row images (None where the op has none), ``source``, and
    ``ts_ms`` (when it was produced)."""
    return {"op": op, "before": before, "after": after, "source": source, "ts_ms": ts_ms}


def heartbeat_record(source: Record, ts_ms: int) -> Record:
    """A heartbeat: ``source.seq`` promises every change up to it precedes it on its partition (§4)."""
    return {"source": source, "ts_ms": ts_ms}
