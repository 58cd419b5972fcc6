"""The reverse lag in lag's shape: the same Burrow-style status rules as the sinks (pure)."""

from __future__ import annotations

import json

from replicator.cutover.cli import reverse_status
from replicator.observe.lag import LagReport, SourceLag, assess, reverse_sink_lag
from replicator.reverse.process import ReverseLag

NOW = 1_000_000


def test_caught_up_is_ok_with_no_lag() -> None:
    row = assess(None, reverse_sink_lag(ReverseLag(10, 10, 0.0, NOW - 60_000, NOW - 61_000)), 0.0, NOW)
    assert (row.status, row.lag_seq, row.lag_events, row.lag_seconds) == ("OK", 0, 0, 0.0)


def test_behind_and_applying_is_ok_behind_and_silent_is_stop() -> None:
    fresh = reverse_sink_lag(ReverseLag(12, 10, 1.5, NOW - 1_000, NOW - 2_000))
    assert assess(None, fresh, 0.0, NOW).status == "OK"
    assert fresh.lag_events == 2 and fresh.lag_seconds == 1.5
    silent = reverse_sink_lag(ReverseLag(12, 10, 90.0, NOW - 60_000, NOW - 90_000))
    assert assess(None, silent, 0.0, NOW).status == "STOP"
    never = reverse_sink_lag(ReverseLag(3, 0, 5.0))
    assert assess(None, never, 0.0, NOW).status == "STOP", "the reverse process never applied anything"


def test_two_samples_stall_and_warn() -> None:
    before = reverse_sink_lag(ReverseLag(12, 10, 1.0, NOW - 1_000, NOW - 2_000))
    same = reverse_sink_lag(ReverseLag(12, 10, 2.0, NOW - 1_000, NOW - 2_000))
    assert assess(before, same, 1.0, NOW).status == "STALL"
    growing = reverse_sink_lag(ReverseLag(20, 11, 2.0, NOW - 500, NOW - 1_500))
    row = assess(before, growing, 1.0, NOW)
    assert row.status == "WARN" and row.rate_per_s == 1.0


def test_the_report_shows_the_reverse_row() -> None:
    report = LagReport(NOW, SourceLag(5, 5, 0), reverse=reverse_sink_lag(ReverseLag(12, 10, 1.5, NOW, NOW)))
    assert "reverse" in report.table().splitlines()[3]
    assert json.loads(report.to_json())["reverse"]["lag_events"] == 2


def test_status_names_what_the_store_set_aside_beside_the_lag() -> None:
    caught_up = ReverseLag(12, 12, 0.0, NOW - 1_000, NOW - 2_000)
    assert reverse_status(caught_up, NOW) == "reverse: OK, lag 0 transactions / 0.0s (applied seq 12 of 12)"
    aside = tuple(f"seq {s} entity {s}: UNIQUE constraint failed: entities.name" for s in range(5, 10))
    first, second = reverse_status(ReverseLag(12, 12, 0.0, NOW - 1_000, NOW - 2_000, aside), NOW).splitlines()
    assert first == "reverse: OK, lag 0 transactions / 0.0s (applied seq 12 of 12)"
    assert second.startswith("    SET ASIDE: 5 change(s) Neo4j took are not in the store")
    assert "rollback refuses until each is fixed in Neo4j" in second
    assert second.endswith("seq 7 entity 7: UNIQUE constraint failed: entities.name; ... and 2 more")


def test_lag_names_what_the_store_set_aside_under_the_reverse_row() -> None:
    aside = ("seq 7 entity 466: UNIQUE constraint failed: entities.name",)
    row = reverse_sink_lag(ReverseLag(12, 12, 0.0, NOW, NOW, aside))
    report = LagReport(NOW, SourceLag(5, 5, 0), reverse=row, reverse_set_aside=aside)
    assert report.table().splitlines()[-1] == f"  set aside, not in the store: 1 ({aside[0]})"
    assert json.loads(report.to_json())["reverse_set_aside"] == list(aside)
    assert "set aside" not in LagReport(NOW, SourceLag(5, 5, 0), reverse=row).table()
