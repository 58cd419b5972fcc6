"""The Qdrant sink's endpoint reader (``/points``) against an endpoint with Qdrant's scroll rules: points
in id order, ``offset`` the id a page starts at (inclusive), ``next`` the id of the next page's first
point. What the cutover's pre-check and rollback read through a running local-mode sink."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from replicator.observe.endpoint import EndpointServer
from replicator.sinks.qdrant.points import vector_from_text, vector_text
from replicator.sinks.qdrant.reader import SinkEndpointReader, add_point
from replicator.validation.errors import MigrateError
from replicator.validation.full import compare_full
from replicator.validation.model import Keys, Relation, Snapshot


def _entity(pid: int) -> dict[str, Any]:
    payload = {"name": f"e{pid}", "entity_type": "thing", "observations": [f"observation {pid} " + "x" * 2000],
               "_seq": pid, "embedding_model": "all-MiniLM-L6-v2"}  # fmt: skip
    return {"id": pid, "payload": payload, "vector": vector_text([pid / 10_000] * 8)}


def _order(point_id: Any) -> tuple[bool, Any]:
    """Qdrant's order of point ids: integers, then uuids."""
    return isinstance(point_id, str), point_id


class ScrollingSink:
    """A sink's ``/points`` over a list of points, paging as Qdrant's scroll does, at most ``page``
    points per answer (a server may serve fewer than asked). Records each request."""

    def __init__(self, points: list[dict[str, Any]], page: int) -> None:
        self.points = sorted(points, key=lambda p: _order(p["id"]))
        self.page = page
        self.asked: list[dict[str, str]] = []
        routes = {"/position": lambda: (200, json.dumps({"sink": "qdrant-a", "store_id": "s"}).encode(), "x")}
        self.server = EndpointServer(routes, 0, query_routes={"/points": self._page})

    def _page(self, params: Mapping[str, str]) -> tuple[int, bytes, str]:
        self.asked.append(dict(params))
        start = json.loads(params["offset"]) if "offset" in params else None
        rest = [p for p in self.points if start is None or _order(p["id"]) >= _order(start)]
        limit = min(int(params.get("limit", "256")), self.page)
        page, after = rest[:limit], rest[limit:]
        if params.get("ids_only") == "1":
            page = [{"id": p["id"], "payload": {}, "vector": None} for p in page]
        doc = {"sink": "qdrant-a", "store_id": "s", "points": page, "next": after[0]["id"] if after else None}
        return 200, json.dumps(doc).encode(), "application/json"

    def reader(self) -> SinkEndpointReader:
        return SinkEndpointReader(f"http://127.0.0.1:{self.server.port}", "qdrant-a", "s")


@pytest.fixture
def sink() -> Iterator[ScrollingSink]:
    fake = ScrollingSink([_entity(i) for i in range(1, 3001)], page=100)
    yield fake
    fake.server.close()


class _Store:
    """The store's side of the comparison: the same entities and vectors the sink holds."""

    def read(self, entity_ids: Any = None, *, embeddings: bool = True, relations: bool = True) -> Snapshot:
        snap = Snapshot("store")
        for pid in entity_ids or ():  # read as the reader reads a point: the sides differ only where the data do
            point = _entity(pid)
            add_point(snap, pid, point["payload"], vector_from_text(point["vector"]), "caxton")
        return snap

    def read_relations(self, relation_ids: Any) -> dict[int, Relation]:
        return {}


def _peak_of_a_full_comparison(points: int) -> tuple[int, int]:
    """(peak bytes traced while comparing ``points`` points, the JSON size of those points)."""
    sink = ScrollingSink([_entity(i) for i in range(1, points + 1)], page=100)
    try:
        tracemalloc.start()
        try:
            keys = Keys(frozenset(range(1, points + 1)), frozenset())
            found = compare_full("qdrant", _Store(), sink.reader(), keys, page=100)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert found == [], found[:3]
        return peak, sum(len(json.dumps(p)) for p in sink.points)
    finally:
        sink.server.close()


def test_the_full_comparison_holds_a_window_of_points_not_the_collection() -> None:
    # Points of ~2 KB each, compared 100 at a time. Holding the collection is what made the cutover
    # of 100K embeddings peak at 767 MB (it would be ~7.6 GB at 1M). What may grow with the collection
    # is its ids (both sides' key sets), a few dozen bytes each; not the points' payloads and vectors.
    small, small_json = _peak_of_a_full_comparison(1500)
    large, large_json = _peak_of_a_full_comparison(3000)
    grown, data = large - small, large_json - small_json
    assert grown < data / 4, f"peak grew {grown / 1e6:.2f} MB for {data / 1e6:.2f} MB more points"


def test_the_comparison_finds_what_differs_on_either_side(sink: ScrollingSink) -> None:
    sink.points = [p for p in sink.points if p["id"] != 1500]  # missing in Qdrant
    sink.points[10]["payload"] = {**sink.points[10]["payload"], "name": "renamed"}  # id 11 differs
    sink.points.append(_entity(4000))  # extra in Qdrant
    found = compare_full("qdrant", _Store(), sink.reader(), Keys(frozenset(range(1, 3001)), frozenset()), page=100)
    assert {(m.kind, m.key) for m in found} == {("entity", 1500), ("entity", 11), ("entity", 4000)}


def test_keys_are_read_without_payloads_or_vectors(sink: ScrollingSink) -> None:
    reader = sink.reader()
    assert reader.keys().entities == frozenset(range(1, 3001))
    assert reader.counts() == {"points": 3000}
    assert sink.asked and all(a.get("ids_only") == "1" for a in sink.asked), sink.asked[:2]


def test_ids_asked_out_of_order_and_far_apart_are_each_read(sink: ScrollingSink) -> None:
    reader = sink.reader()
    assert sorted(reader.read([2999, 5, 7000]).entities) == [5, 2999]
    asked = len(sink.asked)
    snap = reader.read([1200, 3])  # a settle round after a page: behind the window
    assert sorted(snap.entities) == [3, 1200] and snap.entities[1200].name == "e1200"
    assert len(sink.asked) - asked <= 2, "each id far from the others costs one page, not a scan up to it"


def test_a_point_another_client_wrote_is_named_not_a_traceback(sink: ScrollingSink) -> None:
    # mcp-server-qdrant stores its memories at uuid4 ids; the store does not have them.
    sink.points.append({"id": "9b2c5d1e-4f6a-4b8c-9d0e-1f2a3b4c5d6e", "payload": {"document": "note"}, "vector": None})
    reader = sink.reader()
    assert reader.counts() == {"points": 3001}
    assert reader.keys().entities == frozenset(range(1, 3001))
    assert 3000 in reader.read([3000]).entities
    lines = reader.foreign_writes()
    assert len(lines) == 1 and "9b2c5d1e-4f6a-4b8c-9d0e-1f2a3b4c5d6e" in lines[0] and "another client" in lines[0]


def test_the_comparison_reads_forward_in_the_largest_pages() -> None:
    # A local-mode sink sorts every point id for each page it lists: 100K points in pages of 512 cost
    # the pre-check 111 s. Compared 100 at a time, 3,000 points still come in pages of up to 1,000.
    sink = ScrollingSink([_entity(i) for i in range(1, 3001)], page=1000)
    try:
        keys = Keys(frozenset(range(1, 3001)), frozenset())
        assert compare_full("qdrant", _Store(), sink.reader(), keys, page=100) == []
    finally:
        sink.server.close()
    pages = [a for a in sink.asked if a.get("ids_only") != "1"]
    assert len(pages) <= 5, [a.get("limit") for a in pages]


def test_a_few_ids_are_read_without_listing_the_collection(sink: ScrollingSink) -> None:
    # The pre-check re-reads its suspects with a fresh reader each round: a page per id at most, no
    # pass over the collection's ids (13 requests at 100K points, each a sort of every id).
    snap = sink.reader().read([2900, 7, 1500])
    assert sorted(snap.entities) == [7, 1500, 2900]
    assert [(a.get("offset"), a["limit"], a.get("ids_only")) for a in sink.asked] == [
        ("7", "3", None), ("1500", "2", None), ("2900", "1", None)
    ]  # fmt: skip


def test_an_answer_without_points_is_named_not_a_traceback() -> None:
    def route(params: Mapping[str, str]) -> tuple[int, bytes, str]:
        return 200, json.dumps({"sink": "qdrant-a", "store_id": "s", "items": []}).encode(), "application/json"

    server = EndpointServer({}, 0, query_routes={"/points": route})
    try:
        reader = SinkEndpointReader(f"http://127.0.0.1:{server.port}", "qdrant-a", "s")
        with pytest.raises(MigrateError, match="no list of points") as raised:
            reader.counts()
        assert "--qdrant-endpoint" in str(raised.value.hint)
    finally:
        server.close()
