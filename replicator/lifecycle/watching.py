"""``replicator watch`` wired to the real backends: opens the store, Neo4j and Qdrant, checks that
each answers before the first round (a wrong password is a named error, not a minute of failed
reads), serves Prometheus metrics while it runs, and stops early on SIGINT or SIGTERM with the
report of what it saw.
"""

from __future__ import annotations

import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from replicator.errors import Fatal
from replicator.lifecycle import probes as p
from replicator.lifecycle.watch import Probe, Report, watch
from replicator.validation.errors import MigrateError
from replicator.validation.store import StoreReader


def _neo4j(stack: ExitStack, kw: dict[str, Any]) -> list[Probe]:
    import neo4j  # noqa: PLC0415

    from replicator.guide.cli import _neo4j as settings_of  # noqa: PLC0415
    from replicator.sinks.neo4j.faults import describe  # noqa: PLC0415
    from replicator.sinks.neo4j.model import GraphModel  # noqa: PLC0415

    settings = settings_of(kw)
    driver = stack.enter_context(
        neo4j.GraphDatabase.driver(settings.uri, auth=settings.auth(), notifications_min_severity="OFF")
    )
    try:
        driver.verify_connectivity()
        driver.execute_query("RETURN 1", database_=settings.database)
    except Exception as exc:
        said, _ = describe(exc, settings)
        raise Fatal(f"watch: {said}", hint="check --neo4j-uri, the user and its password") from exc
    return p.neo4j_probes(driver, settings.database, GraphModel(entity_label=kw["entity_label"]))


def _qdrant(stack: ExitStack, kw: dict[str, Any], search: bool) -> list[Probe]:
    from replicator.guide.cli import _api_key, _qdrant  # noqa: PLC0415
    from replicator.sinks.qdrant.reader import QdrantReader  # noqa: PLC0415

    settings = _qdrant(kw, required=True)
    assert settings is not None
    try:  # the collection's owner: names a missing collection and one in the other layout
        reader = QdrantReader(settings, api_key=_api_key(kw))
    except MigrateError as exc:
        raise Fatal(f"watch: {exc.message}", hint=exc.hint or "check --qdrant-url and the API key") from exc
    stack.callback(reader.close)
    return p.qdrant_probes(reader.client, settings.collection, settings.layout, search)


def _metrics(stack: ExitStack, port: int) -> Any:  # noqa: ANN401 - an observer
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest  # noqa: PLC0415

    from replicator.observe.endpoint import EndpointServer, metrics_route  # noqa: PLC0415

    registry = CollectorRegistry()
    seconds = Histogram("replicator_watch_read_seconds", "Latency of a watched read", ["backend", "read"],
                        registry=registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))  # fmt: skip
    errors = Counter("replicator_watch_read_errors_total", "Watched reads that failed", ["backend", "read"],
                     registry=registry)  # fmt: skip
    server = EndpointServer({"/metrics": metrics_route(lambda: generate_latest(registry))}, port, name="watch")
    stack.callback(server.close)

    def observe(backend: str, read: str, elapsed: float | None) -> None:
        if elapsed is None:
            errors.labels(backend, read).inc()
        else:
            seconds.labels(backend, read).observe(elapsed)

    return observe


def run_watch(
    db: Path, target: str, kw: dict[str, Any], *, duration_s: float, interval_s: float, count: int, search: bool,
    metrics_port: int | None,
) -> Report:  # fmt: skip
    """Open everything, watch, close everything. Blocks for ``duration_s`` (or until SIGINT/SIGTERM, from
    the start: a signal while it opens the backends ends it with an empty report).
    Raises MigrateError (store) or Fatal (a destination that does not answer at the start)."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    with ExitStack() as stack:
        stack.callback(lambda: [signal.signal(s, handler) for s, handler in previous.items()])
        store = stack.enter_context(StoreReader(db))
        encode = None
        if search:
            from replicator.lifecycle.cli import _encoder  # noqa: PLC0415

            encode = _encoder()
        probes = p.store_probes(store, search)
        if target in ("neo4j", "hybrid"):
            probes += _neo4j(stack, kw)
        if target in ("qdrant", "hybrid"):
            probes += _qdrant(stack, kw, search)
        observe = _metrics(stack, metrics_port) if metrics_port is not None else None
        chosen = p.samples(store, count, encode)
        return watch(probes, chosen, duration_s=duration_s, interval_s=interval_s, stop=stop, observe=observe,
                     sleep=stop.wait)  # fmt: skip
