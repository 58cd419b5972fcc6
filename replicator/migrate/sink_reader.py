"""A running Qdrant sink's destination read through the sink's endpoint (``/position``, ``/points``).

Qdrant's local mode lets one process open a storage directory, and the running sink holds it: this
is how lag, cutover and rollback see what it holds without stopping it. Each answer names the sink
(and the store whose events it applied), and an answer for another sink or store is refused.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

from replicator.migrate.errors import MigrateError
from replicator.migrate.model import Keys, Snapshot, add_point
from replicator.sinks.qdrant.points import vector_from_text


class SinkEndpointReader:
    """What a running Qdrant sink holds, read through its endpoint (``/position``, ``/points``): the
    way to compare a local-mode directory the sink has open. Every answer must name ``sink`` (and
    ``store_id`` when given): an endpoint answering for another sink or store is refused. Reads all
    points on first use (page by page). Blocks; raises MigrateError."""

    def __init__(self, base_url: str, sink: str, store_id: str | None = None, *, timeout_s: float = 10.0) -> None:
        self.base_url, self.sink, self.store_id, self.timeout_s = base_url, sink, store_id, timeout_s
        self._points: dict[int, tuple[dict[str, Any], tuple[float, ...] | None]] | None = None

    def close(self) -> None:
        self._points = None

    def __enter__(self) -> SinkEndpointReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, timeout_s: float) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            with urllib.request.urlopen(url, timeout=max(timeout_s, 0.001)) as response:  # an operator-given URL
                doc = json.load(response)
        except (OSError, ValueError) as exc:
            raise MigrateError(
                f"the Qdrant sink at {url} did not answer: {exc}",
                hint="is `replicator sink qdrant` running with this --metrics-port? (--qdrant-endpoint host:port)",
            ) from exc
        if not isinstance(doc, dict) or doc.get("sink") != self.sink:
            found = doc.get("sink") if isinstance(doc, dict) else None
            raise MigrateError(
                f"{self.base_url} answers for sink {found!r}, not {self.sink!r}",
                hint="point --qdrant-endpoint at this sink's --metrics-port, or pass its --qdrant-sink name",
            )
        if self.store_id is not None and doc.get("store_id") not in (None, self.store_id):
            raise MigrateError(
                f"the sink at {self.base_url} applies the events of store {doc.get('store_id')}, not of this "
                f"store ({self.store_id})",
                hint="check --db, --topic-prefix and --qdrant-endpoint: they must name the same pipeline",
            )
        return doc

    def position_document(self, timeout_s: float) -> dict[str, Any]:
        """The sink's ``/position`` document (position, destination counts, sink, store id)."""
        return self._get("/position", timeout_s)

    def _all(self) -> dict[int, tuple[dict[str, Any], tuple[float, ...] | None]]:
        if self._points is None:
            points: dict[int, tuple[dict[str, Any], tuple[float, ...] | None]] = {}
            offset: Any = None
            while True:
                query = "limit=512" + ("" if offset is None else "&offset=" + urllib.parse.quote(json.dumps(offset)))
                page = self._get(f"/points?{query}", self.timeout_s)
                if page.get("store_id") is None and self.store_id is not None:
                    raise MigrateError(
                        f"the sink at {self.base_url} has applied no event since it started: it cannot say "
                        "which store it serves",
                        hint="wait a second (the source's heartbeats reach it), then retry",
                    )
                for point in page["points"]:
                    points[int(point["id"])] = (dict(point["payload"]), vector_from_text(point.get("vector")))
                offset = page.get("next")
                if offset is None:
                    break
            self._points = points
        return self._points

    def counts(self) -> dict[str, int]:
        return {"points": len(self._all())}

    def keys(self) -> Keys:
        return Keys(entities=frozenset(self._all()), relations=frozenset())

    def read(self, entity_ids: Iterable[int] | None = None) -> Snapshot:
        """Points (all, or those with the given ids) as entities and embeddings."""
        snap = Snapshot("qdrant")
        everything = self._all()
        for pid in sorted(everything if entity_ids is None else set(entity_ids) & set(everything)):
            payload, vector = everything[pid]
            add_point(snap, pid, dict(payload), vector)
        return snap
