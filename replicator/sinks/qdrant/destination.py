"""The Qdrant destination the sink runner drives (design §7): start / apply(batch) / close."""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from qdrant_client import QdrantClient, models

from replicator.embedding import MODEL_NAME
from replicator.errors import ConfigError
from replicator.position import SinkPosition
from replicator.sinks.batch import Batch, StoreMismatch
from replicator.sinks.qdrant.applier import Applier
from replicator.sinks.qdrant.connection import new_client
from replicator.sinks.qdrant.embedder import DEFAULT_ENCODE_BATCH, Embedder
from replicator.sinks.qdrant.faults import missing_collection, qdrant_errors
from replicator.sinks.qdrant.planner import Plan, plan, touched_ids
from replicator.sinks.qdrant.points import seq_of, vector_text
from replicator.sinks.qdrant.reader import read_position
from replicator.sinks.qdrant.reembed import point_text, relabelled
from replicator.sinks.settings import QdrantSettings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

EMBEDDINGS = Counter(
    "replicator_qdrant_embeddings_total",
    "Vectors written by the Qdrant sink, by where they came from (computed by the model, reused from the store)",
    ["sink", "source"],
)
CHANGES = Counter(
    "replicator_qdrant_changes_total",
    "Change events handled by the Qdrant sink, by outcome",
    ["sink", "outcome"],  # vector | payload | delete | skipped
)


#: Point writes whose vectors are built and sent at once: bounds a batch's memory (a 200K-event batch
#: held 3.4 GB: every vector as Python floats and every PointStruct at once, in one request).
WRITE_CHUNK = 512
#: ``_pending`` before the collection was looked at: a previous run may have left pending points.
_UNKNOWN = sys.maxsize


@dataclass(frozen=True)
class QdrantSinkSettings:
    """Where and how the Qdrant sink writes. ``api_key`` only with a server URL."""

    qdrant: QdrantSettings
    sink: str = "qdrant"
    api_key: str | None = None
    encode_batch: int = DEFAULT_ENCODE_BATCH
    timeout_s: int = 30

    def __post_init__(self) -> None:
        if self.api_key and self.qdrant.url is None:
            raise ConfigError("an API key is only used with a Qdrant server URL", hint="drop --api-key with --path")
        if not self.sink:
            raise ConfigError("the sink name is empty", hint="e.g. --sink-name qdrant")

    @property
    def where(self) -> str:
        return self.qdrant.url or str(self.qdrant.path)

    def connect(self) -> QdrantClient:
        """A client (local mode opens and locks the directory). Raises DestinationUnavailable, or
        ConfigError when another process holds the local directory."""
        with qdrant_errors("connecting", self.where):
            if self.qdrant.path is not None:
                self.qdrant.path.mkdir(parents=True, exist_ok=True)
                try:
                    return new_client(self.qdrant)
                except RuntimeError as exc:  # local mode locks the directory for one process
                    raise ConfigError(
                        f"Qdrant local storage {self.qdrant.path} is open in another process: {exc}",
                        hint="run one sink per --path (stop the other one), or use a Qdrant server (--url)",
                    ) from exc
            return new_client(self.qdrant, self.api_key, self.timeout_s)


@dataclass
class Stats:
    """What this destination did since it started (the metrics, without a registry)."""

    computed: int = 0  # vectors computed by the model
    pending: int = 0  # snapshot entities written pending (no model call; docs/qdrant.md "Snapshots")
    filled: int = 0  # pending points given their computed vector (no store vector came)
    reused: int = 0  # store vectors written instead
    vector_writes: int = 0
    payload_only: int = 0
    deletes: int = 0
    skipped: int = 0
    batches: int = 0
    last_plan: Plan | None = field(default=None, repr=False)


class QdrantDestination:
    """Applies batches of entity and embedding change events to a Qdrant collection.

    One runner thread calls start, apply..., close; ``export_points`` may be called from another
    thread (the sink's endpoint) and is serialised with ``apply`` by a lock, since a local-mode client
    is not safe to share. ``client`` and ``model`` may be given (tests, bench, a shared local-mode
    client); otherwise they are opened on start/first use.
    """

    def __init__(
        self,
        settings: QdrantSinkSettings,
        client: QdrantClient | None = None,
        model: SentenceTransformer | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.sink
        self._client = client
        self._owns_client = client is None
        self.embedder = Embedder(model, settings.encode_batch)
        self.stats = Stats()
        self._applier: Applier | None = None
        self._position: SinkPosition | None = None
        self._lock = threading.Lock()
        self._collected = 0  # this sink's watermark when tombstones were last collected
        self._pending: int | None = _UNKNOWN  # highest _seq of points that may be pending (None: none)
        self._filled_at = -1  # the watermark of the last fill

    @property
    def client(self) -> QdrantClient:
        if self._client is None:
            self._client = self.settings.connect()
        return self._client

    def start(self) -> SinkPosition | None:
        """Create the collections if absent and return the stored position (None on a first run).
        Idempotent: the runner calls it again to re-check after a fatal error, and then it also loads
        the model if loading it failed (otherwise the model loads when a change first needs it).

        A collection missing while this sink's position survives was dropped under it: creating an
        empty one would silently lose every point before that position, so that is DestinationRefused
        until it is restored, or its positions are deleted too (the sink then rebuilds it from offset
        0). Raises DestinationUnavailable, DestinationRefused, ModelError, ConfigError (a collection of
        another shape)."""
        applier = Applier(
            self.client, self.settings.qdrant.collection, self.settings.where, self.settings.qdrant.layout
        )
        with qdrant_errors("checking the collection", self.settings.where):
            present = self.client.collection_exists(applier.collection)
        stored = read_position(self.client, applier.collection, self.name)
        if stored is not None and not present:
            raise missing_collection(applier.collection, "starting", self.settings.where)
        applier.ensure_collections()
        if self.embedder.failed:
            self.embedder.load()
        self._applier = applier
        self._position = stored
        legacy = applier.legacy_tombstones()
        if legacy:
            log.warning(
                "ignoring tombstones of an older version",
                extra={
                    "count": legacy,
                    "collection": applier.positions,
                    "hint": "they name no store and are not read any more; remove them (docs/qdrant.md)",
                },
            )
        return self._position

    def apply(self, batch: Batch) -> None:
        """Apply ``batch`` and store its position merged into the stored one. Idempotent (per-point
        ``_seq``, tombstones). Blocks while embedding. Raises DestinationUnavailable, PoisonEvent,
        ModelError."""
        applier = self._applier
        if applier is None:
            raise ConfigError("QdrantDestination.apply before start", hint="call start() first (the runner does)")
        with self._lock:
            self._apply(applier, batch)

    def _apply(self, applier: Applier, batch: Batch) -> None:
        store = batch.store()
        events = batch.unapplied(self._position).events  # a runner's re-read of what is applied
        ids = touched_ids(events)
        state = applier.fetch(ids, store)
        if state.owner is not None and store is not None and state.owner != store:
            raise StoreMismatch(
                f"collection {applier.collection!r} holds the points of store {state.owner}; this sink's events "
                f"come from store {store} (another store, or this one after `source uninstall --forget-identity`)",
                hint="replicate each store into its own --collection; to replace the old points instead, drop "
                f"the collection and {applier.positions!r} (docs/qdrant.md)",
            )
        if store is None and state.owner is not None:  # only tombstones: they are the owner's
            state = applier.fetch(ids, state.owner)
        scope = store or state.owner or ""
        todo = plan(events, state.points, state.tombstones, MODEL_NAME, self.embedder.version, defer_snapshot=True)
        advanced = batch.position(self.name, int(time.time() * 1000))
        position = advanced if self._position is None else self._position.merged(advanced)
        computed = self._write(applier, todo)
        mark = position.watermark()
        if mark is not None:  # before the position: a crash in between fills again (idempotent)
            computed += self._fill_pending(applier, mark.seq)
        due = position.sweep_due()
        if due is not None:  # after this batch's points: it may hold the snapshot's last rows
            applier.sweep(due)
            position = replace(position, swept_seq=due)
        applier.mark(todo.tombstones, position, scope, claim=state.owner is None and store is not None)
        self._position = position
        if mark is not None and mark.seq > self._collected:  # at most once per watermark step
            applier.collect_tombstones(scope)
            self._collected = mark.seq
        self._count(todo, computed)

    def _write(self, applier: Applier, todo: Plan) -> int:
        """Write ``todo``'s points WRITE_CHUNK at a time, computing each chunk's vectors just before
        (bounded memory). Returns the number of texts encoded. Idempotent."""
        computed = 0
        for part in todo.chunks(WRITE_CHUNK):
            texts = part.texts_to_embed
            applier.write(part, self.embedder.embed(texts) if texts else {})
            computed += len(texts)
        pending = [seq_of(w.payload) for w in todo.writes if w.pending]
        if pending:
            self._pending = max(self._pending or 0, *pending)
        return computed

    def _fill_pending(self, applier: Applier, watermark: int) -> int:
        """Compute the vectors of the pending points with ``_seq`` <= ``watermark``: every partition is
        past their snapshot, so no store vector for their text is coming any more. Once per watermark
        step, and only while points may be pending. Returns the number of texts encoded. Idempotent."""
        if self._pending is None or watermark <= self._filled_at:
            return 0
        computed = 0
        while page := applier.pending(watermark, WRITE_CHUNK):
            vectors = self.embedder.embed([point_text(applier.layout, payload) for _, payload in page])
            points = [relabelled(applier.layout, i, p, vectors, self.embedder.version) for i, p in page]
            applier.put(points)
            computed += len(vectors)
            self.stats.filled += len(points)
        self._filled_at = watermark
        if watermark >= self._pending or (self._pending == _UNKNOWN and not applier.pending(_UNKNOWN, 1)):
            self._pending = None
        return computed

    def _count(self, todo: Plan, computed: int) -> None:
        s = self.stats
        s.batches += 1
        s.computed += computed
        s.pending += todo.pending
        s.reused += todo.reused
        s.vector_writes += len(todo.writes)
        s.payload_only += len(todo.payload_updates)
        s.deletes += len(todo.deletes)
        s.skipped += todo.skipped
        s.last_plan = todo
        EMBEDDINGS.labels(self.name, "computed").inc(computed)
        EMBEDDINGS.labels(self.name, "store").inc(todo.reused)
        CHANGES.labels(self.name, "vector").inc(len(todo.writes))
        CHANGES.labels(self.name, "payload").inc(len(todo.payload_updates))
        CHANGES.labels(self.name, "delete").inc(len(todo.deletes))
        CHANGES.labels(self.name, "skipped").inc(todo.skipped)

    def read_position(self) -> SinkPosition | None:
        with self._lock:
            return read_position(self.client, self.settings.qdrant.collection, self.name)

    def export_points(self, offset: Any, limit: int, ids_only: bool = False) -> tuple[list[dict[str, Any]], Any]:  # noqa: ANN401 - a point id
        """One page of the collection for the sink's ``/points`` (the full comparison while this sink
        holds a local-mode directory), from the point with id ``offset`` on (None: the first):
        ``[{"id", "payload", "vector"}]`` (vector as base64 float32; ``ids_only``: ``{}`` and None) and
        the id the next page starts at (None at the end). Any thread. Raises DestinationUnavailable."""
        with self._lock, qdrant_errors("listing points", self.settings.where):
            records, next_offset = self.client.scroll(
                self.settings.qdrant.collection,
                limit=limit,
                offset=offset,
                with_payload=not ids_only,
                with_vectors=not ids_only,
            )
        page = [{"id": r.id, "payload": r.payload or {}, "vector": vector_text(r.vector)} for r in records]
        return page, next_offset

    def describe(self) -> dict[str, int]:
        """What the collection holds: entity points (``_seq`` > 0; a point with only a store vector
        awaiting its entity does not count). Blocks on an exact count. Raises DestinationUnavailable."""
        with self._lock, qdrant_errors("counting", self.settings.where):
            counted = self.client.count(
                self.settings.qdrant.collection,
                count_filter=models.Filter(must=[models.FieldCondition(key="_seq", range=models.Range(gt=0))]),
                exact=True,
            )
        return {"entities": int(counted.count)}

    def close(self) -> None:
        """Close the client if this destination opened it (releases a local-mode directory lock)."""
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None
