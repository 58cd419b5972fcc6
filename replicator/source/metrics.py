"""Prometheus metrics of the source and its HTTP endpoint: ``/metrics`` and ``/healthz``.

Each daemon owns a registry (several can run in one process, e.g. in tests). The server runs in a
daemon thread; ``/healthz`` answers 200 while ``healthy()`` holds, else 503.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from replicator.observe.endpoint import DEFAULT_HOST, EndpointServer, health_route, metrics_route


class SourceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "replicator_source_events_published", "Change events committed to Kafka", ["table", "op"], registry=r
        )
        self.backlog = Gauge("replicator_source_changelog_backlog", "Changelog rows not yet published", registry=r)
        self.last_seq = Gauge("replicator_source_last_published_seq", "Last changelog seq committed", registry=r)
        self.head_seq = Gauge("replicator_source_head_seq", "Highest changelog seq assigned by the store", registry=r)
        self.heartbeat_ts = Gauge(
            "replicator_source_last_heartbeat_timestamp_seconds", "When the last heartbeat committed", registry=r
        )
        self.heartbeat_age = Gauge(
            "replicator_source_heartbeat_age_seconds", "Seconds since the last committed heartbeat", registry=r
        )
        self.txn_failures = Counter(
            "replicator_source_transaction_failures", "Kafka transactions aborted or failed", registry=r
        )
        self.transactions = Counter("replicator_source_transactions", "Kafka transactions committed", registry=r)
        self.snapshot_rows = Counter("replicator_source_snapshot_rows", "Rows published by the snapshot", registry=r)
        # The snapshot's progress (snapshot.SnapshotMeter sets them; snapshot_progress reads them back).
        self.snapshot_expected = Gauge(
            "replicator_source_snapshot_rows_expected", "Rows the snapshot publishes in all (0: none ran)", registry=r
        )
        self.snapshot_done = Gauge(
            "replicator_source_snapshot_rows_done",
            "Rows of the snapshot published, counting those published before a restart",
            registry=r,
        )
        self.parked = Counter(
            "replicator_source_rows_parked",
            "Changes set aside in the store's parked-rows table (too large, or a value no event carries)",
            ["table"],
            registry=r,
        )
        self.parked_rows = Gauge(
            "replicator_source_parked_rows", "Parked changes waiting for `replicator source retry-parked`", registry=r
        )
        self.deletes_skipped = Counter(
            "replicator_source_changelog_deletes_postponed",
            "Deletes postponed: the store's write lock was held",
            registry=r,
        )


class MetricsServer(EndpointServer):
    """Serves ``/metrics`` and ``/healthz`` on ``host:port`` (loopback by default; port 0: any free
    port, see ``.port``)."""

    def __init__(
        self, metrics: SourceMetrics, port: int, healthy: Callable[[], bool], host: str = DEFAULT_HOST
    ) -> None:
        registry = metrics.registry
        routes = {"/metrics": metrics_route(lambda: generate_latest(registry)), "/healthz": health_route(healthy)}
        super().__init__(routes, port, host, name="source-metrics")


@dataclass(frozen=True)
class SnapshotProgress:
    """How far the source's snapshot is: ``done`` of ``total`` rows published."""

    done: int
    total: int

    @property
    def share(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)


def snapshot_progress(exposition: str) -> SnapshotProgress | None:
    """The snapshot's progress in the text of a source's ``/metrics``; None when no snapshot ran in the
    daemon's run (it resumed streaming) or the text has none. Pure."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            values[sample.name] = sample.value
    total = values.get("replicator_source_snapshot_rows_expected")
    if not total:
        return None
    return SnapshotProgress(int(values.get("replicator_source_snapshot_rows_done", 0)), int(total))


def read_snapshot_progress(port: int, host: str = DEFAULT_HOST, timeout_s: float = 2.0) -> SnapshotProgress | None:
    """``snapshot_progress`` of the source serving ``/metrics`` on ``host:port``; None when it does not
    answer (progress is shown, never waited for). Blocks up to ``timeout_s``."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    return snapshot_progress(text)
