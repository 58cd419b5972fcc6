"""The seed guide's lifecycle (issue 16): the decision matrix filled in, and the tuning plan. Pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicator.lifecycle.cli import format_assessment
from replicator.lifecycle.decide import (
    ENTITY_LIMIT,
    FILE_LIMIT_BYTES,
    SEARCH_LINE_MS,
    Indicator,
    check_needs,
    decide,
    matrix_rows,
)
from replicator.lifecycle.tune import node_indexes, relationship_indexes
from replicator.sinks.neo4j.model import GraphModel


def _small(search_ms: float = 20.0, entities: int = 1_000) -> list[Indicator]:
    return [
        Indicator("entities", entities, ENTITY_LIMIT, "entities"),
        Indicator("file_bytes", 10_000_000, FILE_LIMIT_BYTES, "bytes"),
        Indicator("search_p50_ms", search_ms, SEARCH_LINE_MS, "ms"),
    ]


@pytest.mark.parametrize(
    ("value", "status"), [(79_999, "ok"), (80_000, "approaching"), (99_999, "approaching"), (100_000, "over")]
)
def test_an_indicator_approaches_at_80_percent_and_is_over_at_its_limit(value: int, status: str) -> None:
    assert Indicator("entities", value, ENTITY_LIMIT, "entities").status == status


def test_search_is_over_only_beyond_the_line() -> None:
    assert Indicator("search_p50_ms", 100.0, SEARCH_LINE_MS, "ms").status == "approaching"
    assert Indicator("search_p50_ms", 100.1, SEARCH_LINE_MS, "ms").status == "over"


def test_a_small_fast_store_with_no_stated_need_stays_embedded() -> None:
    verdict = decide(1_000, _small())
    assert verdict.backend == "embedded"
    assert verdict.applies == {"<100K entities": "1,000 entities (measured)"}


@pytest.mark.parametrize(
    ("search_ms", "entities", "needs", "backend"),
    [
        (20.0, 1_000, ["graph"], "neo4j"),
        (20.0, 1_000, ["analytics"], "neo4j"),
        (250.0, 1_000, [], "qdrant"),
        (20.0, 1_000, ["search"], "qdrant"),
        (250.0, 1_000, ["graph"], "hybrid"),
        (20.0, 85_000, [], "hybrid"),  # pressure alone: nothing singles out one backend
        (20.0, 1_000, ["multi-node"], "hybrid"),
        (20.0, 2_000_000, ["graph"], "neo4j"),
    ],
)
def test_the_matrix_points_where_the_guide_does(
    search_ms: float, entities: int, needs: list[str], backend: str
) -> None:
    verdict = decide(entities, _small(search_ms, entities), needs)
    assert verdict.backend == backend, verdict.reasons
    assert verdict.reasons


def test_each_reason_names_the_indicator_and_its_line() -> None:
    verdict = decide(85_000, _small(250.0, 85_000))
    assert any("entities is approaching: 85,000 of 100,000" in r for r in verdict.reasons)
    assert any("search_p50_ms is over: 250 ms against 100 ms" in r for r in verdict.reasons)
    assert verdict.applies["High-speed semantic search"].startswith("search p50 250 ms")


def test_a_large_store_marks_the_over_a_million_row() -> None:
    rows = {row: why for row, _, why in matrix_rows(decide(2_000_000, _small(entities=2_000_000)))}
    assert rows[">1M entities"] == "2,000,000 entities (measured)" and rows["<100K entities"] == ""


def test_an_unknown_need_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown need speed: use graph, search"):
        check_needs(["speed"])


def test_the_report_shows_the_matrix_and_the_growth() -> None:
    verdict = decide(1_000, _small())
    data = {
        "store": "m.db", "at_ms": 0, "counts": {"entities": 1000, "relations": 5, "embeddings": 900},
        "file_bytes": 10_000_000, "memory_bytes_estimate": 20_000_000, "search": None,
        "indicators": [i.to_dict() for i in _small()] + [{"name": "memory_bytes_estimate", "status": "ok"}],
        "verdict": verdict.to_dict(),
        "growth": {"since_ms": 0, "entities": 100, "entities_per_day": 50.0, "relations": 3, "file_bytes": 10**6,
                   "days_to_entity_limit": 1980.0},
    }  # fmt: skip
    text = format_assessment(data)
    assert "| <100K entities | ✅ | ⚠️ | ⚠️ | ✅ | 1,000 entities (measured) |" in text
    assert "+100 entities (+50.0/day)" in text and "100K entities in about 1,980 days" in text
    assert "Recommendation: embedded" in text


def test_tuning_uses_the_sinks_names_quoted_and_scoped_to_the_label() -> None:
    model = GraphModel(entity_label="Mem", confidence_property="conf", strength_property="weight")
    statements = [s.statement for s in node_indexes(model)]
    assert statements == [
        "CREATE INDEX `replicator_Mem_name` IF NOT EXISTS FOR (e:`Mem`) ON (e.`name`)",
        "CREATE INDEX `replicator_Mem_entity_type` IF NOT EXISTS FOR (e:`Mem`) ON (e.`entity_type`)",
        "CREATE INDEX `replicator_Mem_confidence` IF NOT EXISTS FOR (e:`Mem`) ON (e.`conf`)",
        "CREATE INDEX `replicator_Mem_name_type` IF NOT EXISTS FOR (e:`Mem`) ON (e.`name`, e.`entity_type`)",
    ]
    [rel] = relationship_indexes(model, ["DEPENDS_ON"])
    assert rel.statement == (
        "CREATE INDEX `replicator_Mem_DEPENDS_ON_strength` IF NOT EXISTS FOR ()-[r:`DEPENDS_ON`]-() ON (r.`weight`)"
    )


def test_capture_overhead_warns_when_the_writer_would_spend_a_fifth_more_time(tmp_path: Path) -> None:
    from replicator.lifecycle.check import check_overhead  # noqa: PLC0415
    from replicator.testing.writer import MemoryWriter  # noqa: PLC0415

    db = tmp_path / "memory.db"
    writer = MemoryWriter.create(db)
    for i in range(3_000):  # written now: the last day's mean is 3,000 / 86,400 writes/s
        writer.create_entity(f"e{i}", "t", [])
    writer.close()
    quiet = check_overhead(db, measured=(0.1, 0.3))
    assert quiet.status == "pass" and "+0.20 ms" in quiet.detail and "3.0x" in quiet.detail
    busy = check_overhead(db, measured=(0.1, 6_000.0))  # 0.0347 writes/s x 6 s = 20.8 % of the time
    assert busy.status == "warn" and "20.8%" in busy.detail and busy.fix


def test_the_monitor_counts_errors_and_differences_and_alerts_on_the_guides_lines() -> None:
    from replicator.lifecycle.watch import Probe, Sample, watch  # noqa: PLC0415

    now = [0.0]

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def store(s: Sample) -> frozenset[int]:
        now[0] += 0.001
        return frozenset({1, 2})

    calls = [0]

    def graph(s: Sample) -> frozenset[int]:
        calls[0] += 1
        now[0] += 0.150  # slow: over the 100 ms line
        if calls[0] % 10 == 0:
            raise RuntimeError("connection reset\nsecond line")
        return frozenset({1}) if s.name == "b" else frozenset({1, 2})

    probes = [Probe("store", "by_name", store), Probe("neo4j", "by_name", graph)]
    report = watch(probes, [Sample("a"), Sample("b")], duration_s=10.0, interval_s=0.5, clock=clock, sleep=sleep)
    rows = {r["backend"]: r for r in report.to_dict()["reads"]}
    assert report.rounds == 20 and rows["store"]["reads"] == 20 and rows["store"]["errors"] == 0
    assert rows["neo4j"]["errors"] == 2 and rows["neo4j"]["error_rate"] == 0.1
    # Every second read is "b" (answered unlike the store), and both failed reads were of "b".
    assert rows["neo4j"]["slow"] == 18 and rows["neo4j"]["differs_from_store"] == 8
    assert report.alerts() == [
        "neo4j by_name: 10.0% of reads failed (line 1 %): RuntimeError: connection reset",
        "neo4j by_name: mean 150 ms (line 100 ms)",
    ]


def test_a_stopped_monitor_reports_what_it_saw() -> None:
    import threading  # noqa: PLC0415

    from replicator.lifecycle.watch import Probe, Sample, watch  # noqa: PLC0415

    stop = threading.Event()

    def store(s: Sample) -> frozenset[int]:
        stop.set()  # a signal arrives during the first round
        return frozenset()

    report = watch([Probe("store", "by_name", store)], [Sample("a")], duration_s=60, interval_s=0, stop=stop)
    assert report.rounds == 1 and report.alerts() == []
