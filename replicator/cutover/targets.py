"""The sinks as lag, cutover and rollback see them: where each one's position lives, which Kafka
group and topics it reads, and checks of its destination against the store.

Positions are read by each sink package's own reader (docs/design.md §5); how to reach the sinks is
:mod:`replicator.cutover.options`. Every read takes a timeout (cutover gives what is left of its
pause) and names the sink it expected: an endpoint that answers for another sink or another store
is refused, never trusted.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import neo4j

from replicator.capture.install import read_state
from replicator.capture.storefile import open_store
from replicator.cutover import precheck
from replicator.cutover.budget import within
from replicator.cutover.options import TargetOptions
from replicator.cutover.precheck import KeyedReader, Settled, settle
from replicator.position import SinkPosition
from replicator.sinks.neo4j.reader import GraphReader
from replicator.sinks.qdrant.connection import new_client
from replicator.sinks.qdrant.reader import QdrantReader, SinkEndpointReader, read_position
from replicator.store.schema import count_rows
from replicator.transport.topics import change_topics
from replicator.validation.validate import ValidationOptions, validate, validate_store

#: A read that is not given a budget (lag, tests) waits this long at most.
DEFAULT_TIMEOUT_S: Final = 10.0
#: A read of the pre-check (before the fence: no writer waits on it) waits this long at most.
PRECHECK_READ_TIMEOUT_S: Final = 60.0


def store_identity(db: Path) -> str | None:
    """The store id capture recorded in the store (None before capture is installed). Raises CaptureError."""
    conn = open_store(db, readonly=True)
    try:
        return read_state(conn).store_id
    finally:
        conn.close()


def _store_counts(db: Path) -> tuple[int, int]:
    conn = open_store(db, readonly=True)
    try:
        counts = count_rows(conn, ("entities", "relations"))
        return counts["entities"], counts["relations"]
    finally:
        conn.close()


class Neo4jTarget:
    """The Neo4j sink: position node and a count check. One driver per instance; close() it."""

    def __init__(self, opts: TargetOptions) -> None:
        self.name, self.group = opts.neo4j_sink, opts.neo4j_group
        self.topics = tuple(change_topics(opts.topic_prefix, ("entities", "relations")))
        self.opts = opts
        # Short client-side bounds: a dead server is reported in seconds, not after 30 s of retries.
        self.driver = neo4j.GraphDatabase.driver(
            opts.neo4j.uri, auth=opts.neo4j.auth(), notifications_min_severity="OFF",
            connection_timeout=DEFAULT_TIMEOUT_S / 2, max_transaction_retry_time=DEFAULT_TIMEOUT_S / 2,
            connection_acquisition_timeout=DEFAULT_TIMEOUT_S,
        )  # fmt: skip
        self.settled = Settled()  # the pre-check's outcome (nothing unsettled until one ran)

    def _query(self, cypher: str, timeout_s: float, **params: Any) -> list[neo4j.Record]:  # noqa: ANN401
        """Records of ``cypher``, within ``timeout_s`` however the server fails (a server that accepts
        and never answers costs the driver connect timeouts and retries: tens of seconds). Raises
        OutOfTime or the driver's error."""

        def run() -> list[neo4j.Record]:
            query = neo4j.Query(cypher, timeout=max(timeout_s, 0.001))
            records, _, _ = self.driver.execute_query(query, parameters_=params, database_=self.opts.neo4j.database)
            return list(records)

        return within(run, timeout_s, f"Neo4j at {self.opts.neo4j.uri}")

    def _reader(self, timeout_s: float) -> GraphReader:
        """The sink's own reader of its graph, all its queries together bounded by ``timeout_s``."""
        deadline = time.monotonic() + timeout_s

        def query(cypher: str, **params: Any) -> list[neo4j.Record]:  # noqa: ANN401
            return self._query(cypher, deadline - time.monotonic(), **params)

        return GraphReader(self.opts.graph_model, query)

    def position(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> SinkPosition | None:
        return self._reader(timeout_s).position(self.name)

    def precheck(self, store: Path) -> list[str]:
        """Before the fence, writers running: every entity and relation compared field by field, then
        the keys that differed settled (``precheck.settle``); those still differing are compared again
        by ``quick_check`` under the fence. Returns what stops the cutover before it fences (the graph
        cannot be read). Blocks (a full read)."""
        try:
            report = validate(
                store, ["neo4j"], neo4j=self.opts.neo4j, graph_model=self.opts.graph_model,
                options=ValidationOptions(full=True, search=False),
            )  # fmt: skip
            self.settled = settle("neo4j", store, report.mismatches, lambda: self._reader(DEFAULT_TIMEOUT_S),
                                  self.position)  # fmt: skip
            # The reads under the fence, once now (their answers differ while writers write): Neo4j plans
            # a query text the first time it sees it, tens of ms the writers would otherwise wait for.
            self.quick_check(store, 1, DEFAULT_TIMEOUT_S)
        except Exception as exc:  # any failure to compare is a reason not to fence, named
            return [f"{self.name}: the pre-check could not compare: {exc}"]
        return []

    def quick_check(self, store: Path, sample: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[str]:
        """Under the fence: counts, then the keys the pre-check left unsettled and ``sample`` random
        entities (with their relations) field by field, on this target's open driver. Blocks ~10 ms
        plus the keys' reads."""
        problems = self._count_check(store, timeout_s)
        if problems:
            return problems
        keys = precheck.with_sample(store, self.settled.unsettled, sample)
        return precheck.recheck("neo4j", store, self._reader(timeout_s), keys)

    def full_check(self, store: Path) -> list[str]:
        """Every entity and relation compared with the store, field by field. Blocks (a full read)."""
        return validate_store(store, self.opts, targets=("neo4j",), full=True, search=False)

    def _count_check(self, store: Path, timeout_s: float) -> list[str]:
        entities, relations = _store_counts(store)
        counts = self._reader(timeout_s).fenced_counts()  # constant time: 1M relationships took 1.7 s to count
        problems = []
        if counts["entities"] != entities:
            problems.append(f"{self.name}: {counts['entities']} entities, the store has {entities}")
        if counts["relations"] != relations:
            problems.append(f"{self.name}: {counts['relations']} relations, the store has {relations}")
        return problems

    def close(self) -> None:
        self.driver.close()


class QdrantTarget:
    """The Qdrant sink: position point (or the sink's ``/position``), counts, and a full comparison.
    With ``store_id``, an endpoint that answers for another store is refused."""

    def __init__(self, opts: TargetOptions, store_id: str | None = None) -> None:
        self.name, self.group = opts.qdrant_sink, opts.qdrant_group
        self.topics = tuple(change_topics(opts.topic_prefix, ("entities", "embeddings")))
        self.opts = opts
        self.store_id = store_id
        self._client: Any = None
        self.settled = Settled()  # the pre-check's outcome (nothing unsettled until one ran)

    @property
    def client(self) -> Any:  # noqa: ANN401 - qdrant_client is imported lazily (heavy)
        if self._client is None:
            settings = self.opts.qdrant
            self._client = new_client(settings, self.opts.qdrant_api_key, int(DEFAULT_TIMEOUT_S))
        return self._client

    def _endpoint(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> SinkEndpointReader:
        assert self.opts.qdrant_endpoint is not None
        return SinkEndpointReader(
            self.opts.qdrant_endpoint, self.name, self.store_id, layout=self.opts.qdrant.layout, timeout_s=timeout_s
        )

    def _precheck_endpoint(self) -> SinkEndpointReader:
        """Before the fence the sink is applying the live writer's changes, and ``/points`` waits for
        its batch (it shares the destination's lock; a batch that embeds takes seconds on a loaded
        machine): the pre-check waits longer than a read under the fence would."""
        return self._endpoint(PRECHECK_READ_TIMEOUT_S)

    def position(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> SinkPosition | None:
        if self.opts.qdrant_endpoint:
            doc = self._endpoint().position_document(timeout_s)
            raw = doc.get("position")
            # A sink that has applied no event since it started cannot say which store it serves yet.
            return SinkPosition.from_json(json.dumps(raw)) if raw and doc.get("store_id") else None
        return read_position(self.client, self.opts.collection, self.name)

    def _points(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> KeyedReader:
        """A reader of the points: the running sink's ``/points`` (local mode it holds) or Qdrant."""
        if self.opts.qdrant_endpoint:
            return self._endpoint(timeout_s)
        self.close()  # local mode: one client per storage directory
        return QdrantReader(self.opts.qdrant, api_key=self.opts.qdrant_api_key)

    def precheck(self, store: Path) -> list[str]:
        """Before the fence, writers running: every point compared (payload, vector, model), then the
        keys that differed settled (``precheck.settle``); those still differing are compared again by
        ``quick_check`` under the fence. Returns what stops the cutover before it fences. Blocks."""
        self.close()
        reader = self._precheck_endpoint if self.opts.qdrant_endpoint else None
        try:
            report = validate(
                store, ["qdrant"], neo4j=self.opts.neo4j, graph_model=self.opts.graph_model, qdrant=self.opts.qdrant,
                qdrant_api_key=self.opts.qdrant_api_key, qdrant_reader=reader,
                options=ValidationOptions(full=True, search=False),
            )  # fmt: skip
            points = functools.partial(self._points, PRECHECK_READ_TIMEOUT_S)
            self.settled = settle("qdrant", store, report.mismatches, points, self.position)
        except Exception as exc:  # any failure to compare is a reason not to fence, named
            return [f"{self.name}: the pre-check could not compare: {exc}"]
        return []

    def quick_check(self, store: Path, sample: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[str]:
        """Under the fence: counts, then the points the pre-check left unsettled (none: no read; with
        the sink's endpoint, reading them pages through every point)."""
        entities, _ = _store_counts(store)
        if self.opts.qdrant_endpoint:
            doc = self._endpoint().position_document(timeout_s)
            points = int(doc.get("destination", {}).get("entities", -1))
        else:
            points = int(self.client.count(self.opts.collection, exact=True).count)
        if points != entities:
            return [f"{self.name}: {points} points, the store has {entities} entities"]
        if not self.settled.unsettled:
            return []
        return precheck.recheck("qdrant", store, self._points(timeout_s), self.settled.unsettled)

    def full_check(self, store: Path) -> list[str]:
        """Every point compared with the store: payload fields, the text its vector embeds, the
        vector (presence, value where the store has it) and model. With ``--qdrant-endpoint`` (local
        mode held by the running sink) the points are read page by page from the sink's ``/points``.
        Blocks (a full read). Raises MigrateError when the destination cannot be read."""
        self.close()  # validation opens its own client (local mode: one per storage directory)
        reader = self._precheck_endpoint if self.opts.qdrant_endpoint else None
        report = validate(
            store, ["qdrant"], neo4j=self.opts.neo4j, graph_model=self.opts.graph_model, qdrant=self.opts.qdrant,
            qdrant_api_key=self.opts.qdrant_api_key, qdrant_reader=reader,
            options=ValidationOptions(full=True, search=False),
        )  # fmt: skip
        return [*report.problems, *(str(m) for m in report.mismatches)]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def sinks_for(
    kinds: Sequence[str], opts: TargetOptions, store_id: str | None = None
) -> list[Neo4jTarget | QdrantTarget]:
    """The targets of ``kinds`` (neo4j, qdrant); ``store_id`` is the store they must serve."""
    return [Neo4jTarget(opts) if kind == "neo4j" else QdrantTarget(opts, store_id) for kind in kinds]


def divergence(store: Path, opts: TargetOptions) -> Callable[[str], list[str]]:
    """For rollback: every difference between the store and the cutover's target(s), in full."""

    def check(target: str) -> list[str]:
        kinds = ("neo4j", "qdrant") if target == "hybrid" else (target,)
        problems: list[str] = []
        for each in sinks_for(kinds, opts, store_identity(store)):
            try:
                problems.extend(each.full_check(store))
            finally:
                each.close()
        return problems

    return check
