"""The daemons' HTTP endpoint and ``scrape``, the reader the benches and tests use on it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from click.testing import CliRunner
from prometheus_client import CollectorRegistry, Counter, generate_latest

from replicator.cli import cli
from replicator.events.avro import HEARTBEAT
from replicator.observe.endpoint import EndpointServer, metrics_route, scrape
from replicator.sinks.batch import Event
from replicator.sinks.metrics import MAX_PAGE, MetricsServer, SinkMetrics
from replicator.sinks.qdrant.reader import SinkEndpointReader
from replicator.sinks.runner_settings import SinkRunnerSettings
from replicator.source.metrics import MetricsServer as SourceMetricsServer
from replicator.source.metrics import SourceMetrics
from replicator.source.settings import SourceSettings


def test_scrape_sums_a_metric_over_its_labels_and_only_that_metric() -> None:
    registry = CollectorRegistry()
    events = Counter("demo_events", "events", ["table"], registry=registry)
    events.labels("entities").inc(3)
    events.labels("relations").inc(4)
    Counter("demo_events_other", "a longer name sharing the prefix", registry=registry).inc(100)
    server = EndpointServer({"/metrics": metrics_route(lambda: generate_latest(registry))}, 0, host="127.0.0.1")
    try:
        assert scrape(server.port, "demo_events_total") == 7.0
        assert scrape(server.port, "demo_events_other_total") == 100.0
        assert scrape(server.port, "absent_total") == 0.0
    finally:
        server.close()
    assert scrape(server.port, "demo_events_total") is None  # nothing answers any more


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def test_the_endpoints_bind_the_loopback_interface_unless_told_otherwise() -> None:
    sink = MetricsServer(SinkMetrics("s"), 0)
    source = SourceMetricsServer(SourceMetrics(), 0, lambda: True)
    bare = EndpointServer({}, 0)
    try:
        for server in (sink, source, bare):
            assert server._server.server_address[0] == "127.0.0.1", server
    finally:
        for server in (sink, source, bare):
            server.close()
    assert SinkRunnerSettings(group="g").metrics_host == "127.0.0.1"
    assert SourceSettings(db=Path("m.db")).metrics_host == "127.0.0.1"
    wide = SinkRunnerSettings(group="g", metrics_host="0.0.0.0")  # the operator's explicit choice
    assert wide.metrics_host == "0.0.0.0"


def test_metrics_host_is_a_flag_of_every_daemon() -> None:
    runner = CliRunner()
    for argv in (["source", "run", "--help"], ["sink", "neo4j", "--help"], ["sink", "qdrant", "--help"]):
        result = runner.invoke(cli, argv)
        assert result.exit_code == 0 and "--metrics-host" in result.output, argv


def test_paths_are_matched_exactly() -> None:
    metrics = SinkMetrics("s")
    server = MetricsServer(metrics, 0)
    try:
        assert _get(server.port, "/position")[0] == 200
        assert _get(server.port, "/position?pretty=1")[0] == 200  # a query string is not part of the path
        for path in ("/positionXYZ", "/position/", "/metricsfoo", "/healthz/x", "/", "/points"):
            assert _get(server.port, path)[0] == 404, path
    finally:
        server.close()


def test_position_names_the_sink_and_the_store_it_applies() -> None:
    metrics = SinkMetrics("qdrant-a")
    server = MetricsServer(metrics, 0)
    try:
        doc = json.loads(_get(server.port, "/position")[1])
        assert doc["sink"] == "qdrant-a" and doc["store_id"] is None
        heartbeat = {"source": {"store": "store-1", "seq": 5, "ts_ms": 1}, "ts_ms": 1}
        metrics.observe_source([Event("t.entities", 0, 7, -1, HEARTBEAT, heartbeat)])
        assert json.loads(_get(server.port, "/position")[1])["store_id"] == "store-1"
    finally:
        server.close()


def test_points_are_served_in_pages_with_the_sink_and_store() -> None:
    points: list[dict[str, object]] = [{"id": i, "payload": {"name": f"e{i}"}, "vector": None} for i in range(5)]

    def export(offset: object, limit: int, ids_only: bool = False) -> tuple[list[dict[str, object]], object]:
        start = 0 if offset is None else int(str(offset))
        return points[start : start + limit], (start + limit if start + limit < len(points) else None)

    metrics = SinkMetrics("qdrant-a")
    metrics.store_id = "store-1"
    server = MetricsServer(metrics, 0, export=export)
    try:
        first = json.loads(_get(server.port, "/points?limit=2")[1])
        assert first["sink"] == "qdrant-a" and first["store_id"] == "store-1"
        assert [p["id"] for p in first["points"]] == [0, 1] and first["next"] == 2
        last = json.loads(_get(server.port, "/points?limit=4&offset=4")[1])
        assert [p["id"] for p in last["points"]] == [4] and last["next"] is None
        assert _get(server.port, "/points?offset=notjson")[0] == 400
    finally:
        server.close()


def test_the_endpoint_reader_reads_a_collection_in_the_largest_pages_the_endpoint_serves() -> None:
    # A Qdrant sink in local mode sorts every point id on each page it lists (qdrant-client's local
    # scroll): pages of 512 made the cutover's pre-check of 100K points spend 111 s in 196 requests.
    total = 2 * MAX_PAGE + 1
    asked: list[int] = []

    def export(offset: object, limit: int, ids_only: bool = False) -> tuple[list[dict[str, object]], object]:
        asked.append(limit)
        start = 0 if offset is None else int(str(offset))
        end = min(start + limit, total)
        page: list[dict[str, object]] = [
            {"id": i, "payload": {"name": f"e{i}", "entity_type": "t"}, "vector": None} for i in range(start, end)
        ]
        return page, (end if end < total else None)

    metrics = SinkMetrics("qdrant-a")
    metrics.store_id = "store-1"
    server = MetricsServer(metrics, 0, export=export)
    try:
        reader = SinkEndpointReader(f"http://127.0.0.1:{server.port}", "qdrant-a", "store-1")
        assert reader.counts() == {"points": total}
        assert asked == [MAX_PAGE, MAX_PAGE, MAX_PAGE], f"{len(asked)} requests of {sorted(set(asked))} points"
        assert len(reader.read().entities) == total  # then the points, a page at a time: no more than the rest
    finally:
        server.close()
    assert asked[3:] == [MAX_PAGE, MAX_PAGE, 1], f"{len(asked)} requests of {sorted(set(asked))} points"
