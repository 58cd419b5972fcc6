"""Reading back what the Qdrant sink writes (design §5, §6), for lag, validate, cutover and rollback.

The one reader of the sink's points, payloads and positions, next to the code that writes them (the
payload codec in :mod:`replicator.sinks.qdrant.points`):

* :class:`QdrantReader`: the points of a collection through a client (a server URL, or a local-mode
  path no running sink holds), as entities and embeddings; nearest-neighbour search.
* :class:`SinkEndpointReader`: the same through a running sink's endpoint (``/position``, ``/points``).
  Qdrant's local mode lets one process open a storage directory, and the running sink holds it: this
  is how lag, cutover and rollback see what it holds without stopping it. Each answer names the sink
  (and the store whose events it applied), and an answer for another sink or store is refused.
* :func:`read_position`: the position a sink stored beside its collection.

All block; the readers raise MigrateError (with a hint) when the destination cannot be read.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient, models

from replicator.position import SinkPosition
from replicator.sinks.metrics import MAX_PAGE
from replicator.sinks.qdrant import layout as qlayout
from replicator.sinks.qdrant.connection import new_client
from replicator.sinks.qdrant.faults import qdrant_errors
from replicator.sinks.qdrant.points import (
    entity_values,
    position_of,
    position_point_id,
    positions_collection,
    vector_bytes,
    vector_from_bytes,
)
from replicator.sinks.settings import QdrantSettings
from replicator.validation.errors import MigrateError
from replicator.validation.model import Embedding, Keys, Snapshot, entity_from_mapping

_CHUNK = 500  # ids per retrieve call


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def add_point(snap: Snapshot, pid: int, payload: dict[str, Any], vector: Any, layout: str) -> None:  # noqa: ANN401
    """One Qdrant point (design §6) into ``snap``: its entity (or a placeholder when the payload has
    no entity fields yet: a vector awaiting its entity) and its vector (the only one of a named-vector
    mapping)."""
    payload = qlayout.from_payload(layout, payload)  # docs/layouts.md
    payload.setdefault("id", pid)
    try:
        snap.entities[pid] = entity_from_mapping({**payload, **entity_values(payload)})
    except (KeyError, ValueError, TypeError):
        snap.placeholders.add(pid)
    if isinstance(vector, dict):
        vector = next(iter(vector.values()), None)
    if isinstance(vector, list | tuple):
        snap.embeddings[pid] = Embedding(
            pid,
            tuple(float(x) for x in vector),
            model_version=payload.get("embedding_model"),
            text_sha256=payload.get("text_sha256"),
        )


def read_position(client: QdrantClient, collection: str, sink: str) -> SinkPosition | None:
    """The position sink ``sink`` stored beside ``collection``; None if it never wrote one (or the
    positions collection does not exist). Raises DestinationUnavailable."""
    with qdrant_errors(f"reading the position of sink {sink!r}", collection):
        if not client.collection_exists(positions_collection(collection)):
            return None
        found = client.retrieve(positions_collection(collection), [position_point_id(sink)], with_payload=True)
    if not found or not found[0].payload:
        return None
    return position_of(found[0].payload)


def open_qdrant(settings: QdrantSettings, api_key: str | None = None) -> QdrantClient:
    """A client for a server URL or a local-mode path. Raises MigrateError (a local path is locked
    while another client, e.g. a running sink, holds it)."""
    if settings.path is not None and not settings.path.exists():
        raise MigrateError(f"no Qdrant local storage at {settings.path}", hint="check --qdrant-path")
    try:
        return new_client(settings, api_key)
    except Exception as exc:
        raise MigrateError(
            f"cannot open Qdrant at {settings.url or settings.path} ({exc})",
            hint="a local path can be open in one process only: stop the sink or use the server URL",
        ) from exc


def is_entity_point(point_id: object) -> bool:
    """The sink writes each entity at its integer id; any other id (mcp-server-qdrant stores uuid4 ids)
    is a point another client wrote into the collection, which the store does not have."""
    return isinstance(point_id, int)


def foreign_point(point_id: object, document: str = "") -> str:
    """The line naming a point another client wrote; ``document``: what the reader read of it, shown
    after the id. Pure."""
    return (f"qdrant: point {point_id}{document} has no Caxton entity id: written by another client "
            "(mcp-server-qdrant stores such points), the store does not have it")  # fmt: skip


class QdrantReader:
    """The points of one collection: entity payloads and their vectors (design §6)."""

    def __init__(
        self, settings: QdrantSettings, client: QdrantClient | None = None, *, api_key: str | None = None
    ) -> None:
        self.settings = settings
        self.collection = settings.collection
        self._own = client is None
        self.client = client or open_qdrant(settings, api_key)
        try:
            exists = self.client.collection_exists(self.collection)
        except Exception as exc:
            self.close()
            raise MigrateError(f"Qdrant at {settings.url or settings.path} is not answering ({exc})", hint="") from exc
        if not exists:
            self.close()
            raise MigrateError(
                f"Qdrant has no collection {self.collection!r} at {settings.url or settings.path}",
                hint="check --collection, or start the Qdrant sink (it creates the collection)",
            )
        self._check_layout()

    def _check_layout(self) -> None:
        """Raises MigrateError naming both layouts when the collection holds another than the settings'."""
        held = qlayout.layout_of(self.client.get_collection(self.collection).config.params.vectors)
        if held is not None and held != self.settings.layout:
            self.close()
            raise MigrateError(
                f"Qdrant collection {self.collection!r} holds the {held} layout, not {self.settings.layout}",
                hint=f"pass --layout {held} (or REPLICATOR_LAYOUT={held}), as the sink was run (docs/layouts.md)",
            )

    def close(self) -> None:
        if self._own:
            self.client.close()

    def __enter__(self) -> QdrantReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def counts(self) -> dict[str, int]:
        return {"points": int(self.client.count(self.collection, exact=True).count)}

    def _scroll(self, *, vectors: bool, payload: bool | list[str], limit: int = 512) -> Iterator[models.Record]:
        offset: Any = None
        while True:
            points, offset = self.client.scroll(
                self.collection, limit=limit, offset=offset, with_payload=payload, with_vectors=vectors
            )
            yield from points
            if offset is None:
                return

    def keys(self) -> Keys:
        return Keys(
            # Ids only: large pages (local mode sorts every id on each scroll call).
            entities=frozenset(
                int(p.id) for p in self._scroll(vectors=False, payload=False, limit=10_000) if is_entity_point(p.id)
            ),
            relations=frozenset(),
        )

    def read(self, entity_ids: Iterable[int] | None = None) -> Snapshot:
        """Points (all, or those with the given ids) as entities and embeddings."""
        snap = Snapshot("qdrant")
        if entity_ids is None:
            points: Iterable[models.Record] = self._scroll(vectors=True, payload=True)
        else:
            ids = sorted(set(entity_ids))
            points = [
                p
                for chunk in _chunks(ids)
                for p in self.client.retrieve(self.collection, ids=list(chunk), with_payload=True, with_vectors=True)
            ]
        for point in points:
            if is_entity_point(point.id):  # others: foreign_writes names them
                add_point(snap, int(point.id), dict(point.payload or {}), point.vector, self.settings.layout)
        return snap

    def foreign_writes(self, limit: int = 100) -> list[str]:
        """Points of the collection that are not an entity's (an id other than an integer), one line
        each: an agent's memory stored through mcp-server-qdrant after a cutover, which the store does
        not have and a rollback would lose. Blocks (a scroll of the ids and documents)."""
        lines = []
        for point in self._scroll(vectors=False, payload=[qlayout.DOCUMENT]):
            if is_entity_point(point.id):
                continue
            lines.append(foreign_point(point.id, f" ({(point.payload or {}).get(qlayout.DOCUMENT)!r})"))
            if len(lines) >= limit:
                break
        return lines

    def search(self, vector: Sequence[float], limit: int) -> list[int]:
        """Ids of the ``limit`` nearest points (the collection's distance, cosine)."""
        result = self.client.query_points(self.collection, query=list(vector), limit=limit, with_payload=False,
                                          using=qlayout.vector_name(self.settings.layout))  # fmt: skip
        return [int(p.id) for p in result.points if is_entity_point(p.id)]


class SinkEndpointReader:
    """What a running Qdrant sink holds, read through its endpoint (``/position``, ``/points``): the
    way to compare a local-mode directory the sink has open. Every answer must name ``sink`` (and
    ``store_id`` when given): an endpoint answering for another sink or store is refused.

    Holds a window of points, not the collection: the ids are read once without payloads or vectors
    (``keys``, ``counts``), and ``read`` pages forward from the first id it is asked for, keeping only
    the page that covers the ids being asked (the full comparison asks ascending pages of ids, so each
    point is fetched once); a ``read`` of a few ids (a pre-check's suspects, with a fresh reader each
    round) lists nothing else. ``/points`` pages as Qdrant's scroll does: ``offset`` is the id a page
    starts at, inclusive, and ``next`` the id the next page starts at. Blocks; raises MigrateError."""

    def __init__(self, base_url: str, sink: str, store_id: str | None = None, *, timeout_s: float = 10.0,
                 layout: str = "caxton") -> None:  # fmt: skip
        self.base_url, self.sink, self.store_id, self.timeout_s = base_url, sink, store_id, timeout_s
        self.layout = layout
        self._ids: list[Any] | None = None  # every point id, in the collection's order
        self._entity_ids: list[int] = []  # the entity points' ids, ascending
        self._window: dict[int, tuple[dict[str, Any], bytes | None]] = {}  # vectors still packed
        self._covered: tuple[int, Any] | None = None  # the window holds every point from [0] up to before [1]
        self._streaming = False  # reading forward page after page (see _move_window)

    def close(self) -> None:
        self._ids, self._entity_ids, self._window, self._covered, self._streaming = None, [], {}, None, False

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

    def _page(self, offset: Any, limit: int, *, ids_only: bool) -> tuple[list[dict[str, Any]], Any]:  # noqa: ANN401
        after = "" if offset is None else "&offset=" + urllib.parse.quote(json.dumps(offset))
        page = self._get(f"/points?limit={limit}{after}{'&ids_only=1' if ids_only else ''}", self.timeout_s)
        if page.get("store_id") is None and self.store_id is not None:
            raise MigrateError(
                f"the sink at {self.base_url} has applied no event since it started: it cannot say "
                "which store it serves",
                hint="wait a second (the source's heartbeats reach it), then retry",
            )
        points = page.get("points")
        if not isinstance(points, list):
            raise MigrateError(
                f"the sink at {self.base_url} answered /points with no list of points",
                hint="point --qdrant-endpoint at the Qdrant sink's --metrics-port, of this replicator's version",
            )
        return points, page.get("next")

    def _all_ids(self) -> list[Any]:
        if self._ids is None:
            ids: list[Any] = []
            offset: Any = None
            while True:  # the largest pages: each costs a local-mode sink a sort of every id
                points, offset = self._page(offset, MAX_PAGE, ids_only=True)
                ids += [p["id"] for p in points]
                if offset is None:
                    break
            self._ids, self._entity_ids = ids, sorted(int(i) for i in ids if is_entity_point(i))
        return self._ids

    def counts(self) -> dict[str, int]:
        return {"points": len(self._all_ids())}

    def keys(self) -> Keys:
        self._all_ids()
        return Keys(entities=frozenset(self._entity_ids), relations=frozenset())

    def foreign_writes(self, limit: int = 100) -> list[str]:
        """Points that are not an entity's (see QdrantReader.foreign_writes), named by id."""
        foreign = [i for i in self._all_ids() if not is_entity_point(i)]
        return [foreign_point(pid) for pid in foreign[:limit]]

    def read(self, entity_ids: Iterable[int] | None = None) -> Snapshot:
        """Points (all, or those with the given ids) as entities and embeddings."""
        snap = Snapshot("qdrant")
        if entity_ids is None:
            self._all_ids()
        wanted = self._entity_ids if entity_ids is None else sorted(set(entity_ids))
        for i, pid in enumerate(wanted):
            if not self._covers(pid):
                self._move_window(pid, first=i == 0, remaining=len(wanted) - i)
            found = self._window.get(pid)
            if found is not None:
                add_point(snap, pid, dict(found[0]), vector_from_bytes(found[1]), self.layout)
        return snap

    def _covers(self, pid: int) -> bool:
        if self._covered is None:
            return False
        start, end = self._covered
        # The next page may start at a uuid: Qdrant lists every integer id before them.
        return bool(start <= pid and (end is None or not is_entity_point(end) or pid < end))

    def _move_window(self, pid: int, *, first: bool, remaining: int) -> None:
        """Replace the window by the page starting at ``pid``. Streaming (a ``read`` that starts ahead
        of the window, as the full comparison's next page of ids does, and the pages after it) it is
        the largest page: each costs a local-mode sink a sort of every id. Otherwise (a first read, or
        ids behind the window: a pre-check's few suspects) it is as many points as ids are still to
        read; where they are sparse, the next one starts a page of its own."""
        forward = self._covered is not None and pid >= self._covered[0]
        self._streaming = forward and (first or self._streaming)
        limit = MAX_PAGE if self._streaming else max(1, min(remaining, MAX_PAGE))
        self._window = {}  # before the read: one page held at a time
        points, after = self._page(pid, limit, ids_only=False)
        self._window = {
            int(p["id"]): (dict(p["payload"]), vector_bytes(p.get("vector")))
            for p in points
            if is_entity_point(p["id"])
        }
        self._covered = (pid, after)
