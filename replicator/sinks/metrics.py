"""Prometheus metrics of a sink and its HTTP endpoint: ``/metrics``, ``/healthz``, ``/position`` and,
for a destination that can list what it holds, ``/points``.

``/position`` and ``/points`` name the sink and the store whose events it applied (``sink``,
``store_id``), so that lag, cutover and rollback can check that they ask the sink they mean.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from replicator.observe.endpoint import DEFAULT_HOST, EndpointServer, QueryRoute, health_route, metrics_route
from replicator.position import PartitionKey, SinkPosition
from replicator.sinks.batch import Event
from replicator.sinks.clients import KafkaConsumer

#: What a destination that can list its records offers ``/points``: (offset, limit, ids_only) ->
#: (records, next offset or None), paged as Qdrant's scroll: ``offset`` is the id a page starts at
#: (inclusive), the next offset the id the next page starts at; ``ids_only``: records without payload
#: or vector. Called on the endpoint's thread: the destination guards its client.
Export = Callable[[Any, int, bool], tuple[list[dict[str, Any]], Any]]
#: Records per ``/points`` page, at most. Large because a Qdrant sink in local mode sorts every point
#: id on each page it lists (qdrant-client's local scroll): 100K points in pages of 512 took 111 s of
#: the cutover's pre-check. A page of 8192 points with 384-d vectors is ~25 MB of JSON.
MAX_PAGE = 8192


class SinkMetrics:
    """One registry per runner (several runners may live in one test process)."""

    def __init__(self, sink: str, group: str = "") -> None:
        self.sink = sink
        #: The store id (``source.store``) of the events this sink applied last; None before any.
        self.store_id: str | None = None
        self.registry = CollectorRegistry()
        labels = ["sink"]
        self.applied = Counter(
            "replicator_sink_events_applied", "Change events applied", labels, registry=self.registry
        ).labels(sink)
        self.batch_seconds = Histogram(
            "replicator_sink_batch_seconds",
            "Time to apply one batch (with its position)",
            labels,
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        ).labels(sink)
        self.retries = Counter(
            "replicator_sink_retries", "Batches retried because the destination was unavailable", labels,
            registry=self.registry,
        ).labels(sink)  # fmt: skip
        self.dead_letters = Counter(
            "replicator_sink_dead_letters", "Events sent to the dead-letter topic", labels, registry=self.registry
        ).labels(sink)
        self.watermark_seq = Gauge(
            "replicator_sink_watermark_seq", "Seq up to which every change is applied", labels,
            registry=self.registry,
        ).labels(sink)  # fmt: skip
        self.watermark_lag = Gauge(
            "replicator_sink_watermark_lag_seconds", "Now minus the watermark's store time", labels,
            registry=self.registry,
        ).labels(sink)  # fmt: skip
        self.fatal = Gauge(
            "replicator_sink_fatal", "1 while the sink is stopped on a fatal error, waiting for its cause to be fixed",
            labels, registry=self.registry,
        ).labels(sink)  # fmt: skip
        #: What ``/healthz`` answers: 200 while healthy, else 503 with ``health_detail`` (the cause).
        self.healthy = True
        self.health_detail = ""
        #: What ``/position`` serves: the position as last written, and what the destination holds
        #: (Destination.describe, when it has one). Qdrant's local mode lets one process open its
        #: storage, so lag and cutover ask the sink instead of the destination.
        self.position: SinkPosition | None = None
        self.destination_state: dict[str, int] = {}
        self._watermark_ts_ms: int | None = None
        self.watermark_lag.set_function(self._lag)
        # The same figures under kafka-lag-exporter's names, so its dashboards and alerts apply.
        self.group_lag = Gauge(
            "kafka_consumergroup_group_lag", "Messages behind the log end, per partition (the sink's own position)",
            ["group", "topic", "partition"], registry=self.registry,
        )  # fmt: skip
        self.group_lag_seconds = Gauge(
            "kafka_consumergroup_group_lag_seconds", "Seconds the sink is behind the store (from its watermark)",
            ["group"], registry=self.registry,
        )  # fmt: skip

    def set_health(self, healthy: bool, detail: str = "", fatal: bool = False) -> None:
        """Publish the state ``/healthz`` serves (``detail``: the cause and its fix while unhealthy)."""
        self.health_detail = "" if healthy else detail
        self.healthy = healthy
        self.fatal.set(1 if fatal and not healthy else 0)

    def _lag(self) -> float:
        return float("nan") if self._watermark_ts_ms is None else max(0.0, time.time() - self._watermark_ts_ms / 1000)

    def observe_consumer_lag(
        self, consumer: KafkaConsumer, group: str, assigned: Iterable[PartitionKey], position: SinkPosition | None
    ) -> None:
        """Per-partition lag: the log end the consumer last saw (cached by librdkafka on every fetch,
        no broker round trip) minus this sink's next offset."""
        lags: dict[tuple[str, int], int] = {}
        for key in assigned:
            try:
                _low, high = consumer.get_watermark_offsets(TopicPartition(key.topic, key.partition), cached=True)
            except Exception:  # not fetched yet: nothing to say
                continue
            if high is None or high < 0:
                continue
            next_offset = position.offsets.get(key, 0) if position else 0
            lags[(key.topic, key.partition)] = max(0, int(high) - next_offset)
        self.observe_group_lag(group, lags)

    def observe_group_lag(self, group: str, lags: dict[tuple[str, int], int]) -> None:
        for (topic, partition), lag in lags.items():
            self.group_lag.labels(group, topic, str(partition)).set(lag)
        self.group_lag_seconds.labels(group).set(self._lag())

    def observe_position(self, position: SinkPosition | None) -> None:
        self.position = position
        mark = None if position is None else position.watermark()
        if mark is not None:
            self.watermark_seq.set(mark.seq)
            self._watermark_ts_ms = mark.ts_ms

    def observe_source(self, events: Iterable[Event]) -> None:
        """Remember which store the applied events (heartbeats included) came from."""
        for event in events:
            if event.record is not None:
                self.store_id = str(event.record["source"]["store"])

    def render(self) -> bytes:
        # This runner's registry, then the process-wide one (destinations' own counters).
        return generate_latest(self.registry) + generate_latest(REGISTRY)

    def position_document(self) -> bytes:
        position = None if self.position is None else json.loads(self.position.to_json())
        return json.dumps({
            "sink": self.sink, "store_id": self.store_id, "position": position, "destination": self.destination_state,
        }).encode()  # fmt: skip


def points_route(metrics: SinkMetrics, export: Export) -> QueryRoute:
    """``/points?offset=<id>&limit=<n>[&ids_only=1]``: one page of what the destination holds, from
    the point with id ``offset`` on (``next``: where the next page starts)."""

    def route(params: Mapping[str, str]) -> tuple[int, bytes, str]:
        try:
            limit = max(1, min(int(params.get("limit", "256")), MAX_PAGE))
            offset: Any = json.loads(params["offset"]) if "offset" in params else None
        except ValueError:
            return 400, b"bad offset or limit\n", "text/plain"
        try:
            records, next_offset = export(offset, limit, params.get("ids_only") == "1")
        except Exception as exc:  # the destination is down: say so, the caller decides
            return 503, f"cannot read the destination: {exc}\n".encode(), "text/plain"
        doc = {"sink": metrics.sink, "store_id": metrics.store_id, "points": records, "next": next_offset}
        return 200, json.dumps(doc).encode(), "application/json"

    return route


class MetricsServer(EndpointServer):
    """Serves ``/metrics``, ``/healthz``, ``/position`` (and ``/points`` with ``export``) in a daemon
    thread on ``host`` (loopback by default). ``port`` 0 picks a free one."""

    def __init__(self, metrics: SinkMetrics, port: int, host: str = DEFAULT_HOST, export: Export | None = None) -> None:
        routes = {
            "/metrics": metrics_route(metrics.render),
            "/position": lambda: (200, metrics.position_document(), "application/json"),
            "/healthz": health_route(lambda: metrics.healthy, lambda: metrics.health_detail),
        }
        queries = {} if export is None else {"/points": points_route(metrics, export)}
        super().__init__(routes, port, host, name="sink-metrics", query_routes=queries)
