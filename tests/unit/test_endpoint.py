"""The daemons' HTTP endpoint and ``scrape``, the reader the benches and tests use on it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from replicator.endpoint import EndpointServer, metrics_route, scrape


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
