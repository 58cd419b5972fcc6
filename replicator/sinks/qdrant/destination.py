"""The Qdrant destination the sink runner drives (design §7): start / apply(batch) / close."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from prometheus_client import Counter
from qdrant_client import QdrantClient, models

from replicator.embedding import MODEL_NAME
from replicator.errors import ConfigError
from replicator.position import SinkPosition
from replicator.sinks.batch import Batch, StoreMismatch
from replicator.sinks.qdrant.applier import Applier, qdrant_errors, read_position
from replicator.sinks.qdrant.embedder import DEFAULT_ENCODE_BATCH, Embedder
from replicator.sinks.qdrant.planner import Plan, plan, touched_ids
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
                    return QdrantClient(path=str(self.qdrant.path))
                except RuntimeError as exc:  # local mode locks the directory for one process
                    raise ConfigError(
                        f"Qdrant local storage {self.qdrant.path} is open in another process: {exc}",
                        hint="run one sink per --path (stop the other one), or use a Qdrant server (--url)",
                    ) from exc
            return QdrantClient(url=self.qdrant.url, api_key=self.api_key, timeout=self.timeout_s)


@dataclass
class Stats:
    """What this destination did since it started (the metrics, without a registry)."""

    computed: int = 0  # vectors computed by the model
    reused: int = 0  # store vectors written instead
    vector_writes: int = 0
    payload_only: int = 0
    deletes: int = 0
    skipped: int = 0
    batches: int = 0
    last_plan: Plan | None = field(default=None, repr=False)


class QdrantDestination:
    """Applies batches of entity and embedding change events to a Qdrant collection.

    Not thread-safe: one runner thread calls start, apply..., close. ``client`` and ``model`` may be
    given (tests, bench, a shared local-mode client); otherwise they are opened on start/first use.
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
        self._collected = 0  # this sink's watermark when tombstones were last collected

    @property
    def client(self) -> QdrantClient:
        if self._client is None:
            self._client = self.settings.connect()
        return self._client

    def start(self) -> SinkPosition | None:
        """Create the collections if absent; return the stored position (None on a first run).
        Idempotent. Raises DestinationUnavailable, ConfigError (a collection of another shape)."""
        applier = Applier(self.client, self.settings.qdrant.collection, self.settings.where)
        applier.ensure_collections()
        self._applier = applier
        self._position = read_position(self.client, applier.collection, self.name)
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
        todo = plan(events, state.points, state.tombstones, MODEL_NAME, self.embedder.version)
        texts = todo.texts_to_embed
        vectors = self.embedder.embed(texts) if texts else {}
        advanced = batch.position(self.name, int(time.time() * 1000))
        position = advanced if self._position is None else self._position.merged(advanced)
        applier.write(todo, vectors)
        due = position.sweep_due()
        if due is not None:  # after this batch's points: it may hold the snapshot's last rows
            applier.sweep(due)
            position = replace(position, swept_seq=due)
        applier.mark(todo.tombstones, position, scope, claim=state.owner is None and store is not None)
        self._position = position
        mark = position.watermark()
        if mark is not None and mark.seq > self._collected:  # at most once per watermark step
            applier.collect_tombstones(scope)
            self._collected = mark.seq
        self._count(todo, len(texts))

    def _count(self, todo: Plan, computed: int) -> None:
        s = self.stats
        s.batches += 1
        s.computed += computed
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
        return read_position(self.client, self.settings.qdrant.collection, self.name)

    def describe(self) -> dict[str, int]:
        """What the collection holds: entity points (``_seq`` > 0; a point with only a store vector
        awaiting its entity does not count). Blocks on an exact count. Raises DestinationUnavailable."""
        with qdrant_errors("counting", self.settings.where):
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
