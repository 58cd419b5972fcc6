"""Lag arithmetic and Burrow-style status, from samples (pure)."""

from __future__ import annotations

from replicator.observe.lag import PartitionLag, assess, sink_lag
from replicator.position import Heartbeat, PartitionKey, SinkPosition

NOW = 1_800_000_000_000


def _position(seq: int, ts_ms: int, updated_ms: int) -> SinkPosition:
    return SinkPosition("neo4j", {}, {PartitionKey("t", 0): Heartbeat(seq, ts_ms)}, {"t": 1}, seq, updated_ms)


def _sample(committed: int, end: int, seq: int = 10, updated_ms: int = NOW, head: int = 10):  # type: ignore[no-untyped-def]
    return sink_lag(
        "neo4j", "g", partitions=[PartitionLag("t", 0, committed, end)],
        position=_position(seq, NOW - 2000, updated_ms), head_seq=head, now_ms=NOW,
    )  # fmt: skip


def test_caught_up_is_ok_with_seconds_from_the_watermark() -> None:
    lag = assess(None, _sample(100, 100), 0, NOW)
    assert (lag.status, lag.lag_events, lag.lag_seq, lag.lag_seconds) == ("OK", 0, 0, 2.0)


def test_catching_up_is_ok_with_an_eta() -> None:
    lag = assess(_sample(50, 150, seq=5, head=20), _sample(100, 160, seq=8, head=20), 1.0, NOW)
    assert lag.status == "OK" and lag.rate_per_s == 50 and lag.eta_s == 60 / 50


def test_growing_lag_warns() -> None:
    assert assess(_sample(50, 100, seq=5), _sample(60, 200, seq=6), 1.0, NOW).status == "WARN"


def test_commits_not_moving_stall() -> None:
    assert assess(_sample(50, 100, seq=5), _sample(50, 100, seq=5), 1.0, NOW).status == "STALL"


def test_silent_sink_behind_is_stopped() -> None:
    old = NOW - 60_000
    assert assess(None, _sample(50, 100, seq=5, updated_ms=old), 0, NOW).status == "STOP"


def test_a_sink_without_position_behind_is_stopped() -> None:
    lag = sink_lag("qdrant", "g", partitions=[PartitionLag("t", 0, None, 7)], position=None, head_seq=7, now_ms=NOW)
    assert assess(None, lag, 0, NOW).status == "STOP"
    assert lag.lag_events == 7 and lag.lag_seq is None
