"""What ``replicator.yaml`` describes: one frozen, validated object for the whole migration.

Every default is the one its owner declares (the sink runner, the Neo4j graph model, the connection
settings, the cutover plan, Kafka's settings): this module references them and declares none of its
own, so a daemon started without a file and a command reading the file agree. Pure: no I/O, no
client library imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from replicator.cutover.cutover import WRITER_WAIT_S, CutoverPlan
from replicator.cutover.options import DEFAULT_NEO4J_GROUP, DEFAULT_QDRANT_GROUP
from replicator.embedding import DIMENSIONS
from replicator.errors import ConfigError
from replicator.observe.endpoint import DEFAULT_HOST
from replicator.sinks.neo4j.model import GraphModel
from replicator.sinks.qdrant.embedder import DEFAULT_ENCODE_BATCH
from replicator.sinks.runner_settings import SinkRunnerSettings
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from replicator.source.settings import SourceSettings
from replicator.transport.settings import DEFAULT_BOOTSTRAP, DEFAULT_MAX_MESSAGE_BYTES, check_max_message_bytes
from replicator.transport.topics import DEFAULT_PREFIX

Layout = Literal["caxton", "mcp"]
Strategy = Literal["live", "blue-green"]
Target = Literal["neo4j", "qdrant", "hybrid"]
LAYOUTS: Final = ("caxton", "mcp")
STRATEGIES: Final = ("live", "blue-green")
TARGETS: Final = ("neo4j", "qdrant", "hybrid")
#: The one distance the sink's collections use (the model's vectors are L2-normalised).
DISTANCE: Final = "Cosine"


@dataclass(frozen=True)
class Secret:
    """A password or API key and where it came from. ``origin`` is what may be shown (``${VAR}``,
    ``file /path``, ``inline``); the value never is (repr, ``masked``)."""

    value: str = field(repr=False)
    origin: str

    @property
    def masked(self) -> str:
        return f"****** (from {self.origin})"


@dataclass(frozen=True)
class StoreConfig:
    """Caxton's store (the source) and Caxton's own configuration file, which the cutover switches."""

    path: Path = Path("./data/memory.db")
    caxton_config: Path | None = None


@dataclass(frozen=True)
class KafkaConfig:
    """Transport: every topic name derives from ``topic_prefix`` (transport/topics.py)."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    topic_prefix: str = DEFAULT_PREFIX
    schema_registry: str | None = None
    replication_factor: int | None = None  # None: decided from the brokers (transport/settings.py)
    min_insync_replicas: int | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    partitions: int = SourceSettings.partitions

    def __post_init__(self) -> None:
        if not self.topic_prefix.strip() or self.topic_prefix.endswith("."):
            raise ConfigError(f"kafka.topic_prefix {self.topic_prefix!r} is invalid", hint="e.g. caxton.memory")
        check_max_message_bytes(self.max_message_bytes)


@dataclass(frozen=True)
class SourceOptions:
    """How the source daemon runs (``replicator source run``); the rest of its settings are the
    store's and Kafka's."""

    heartbeat_interval_s: float = SourceSettings.heartbeat_interval_s
    batch_rows: int = SourceSettings.batch_rows
    snapshot_chunk_rows: int = SourceSettings.snapshot_chunk_rows
    metrics_port: int | None = None  # None: no HTTP endpoint
    metrics_host: str = DEFAULT_HOST


@dataclass(frozen=True)
class BatchConfig:
    """How a sink batches (the runner's settings)."""

    size: int = SinkRunnerSettings.batch_max_events
    age_ms: int = SinkRunnerSettings.batch_max_age_ms

    def __post_init__(self) -> None:
        if self.size < 1 or self.age_ms < 1:
            raise ConfigError("batch size and age must be positive", hint="e.g. batch_size: 1000, batch_age_ms: 200")


@dataclass(frozen=True)
class Neo4jConfig:
    """The Neo4j destination and its sink. ``sink`` defaults to the group, as the sink's own does."""

    uri: str = Neo4jSettings.uri
    database: str = Neo4jSettings.database
    user: str = Neo4jSettings.user
    password: Secret | None = None
    graph: GraphModel = field(default_factory=GraphModel)
    layout: Layout = "caxton"
    group: str = DEFAULT_NEO4J_GROUP
    sink: str = ""
    batch: BatchConfig = field(default_factory=BatchConfig)
    metrics_port: int | None = None  # the sink's /metrics, /healthz, /position; None: none
    metrics_host: str = DEFAULT_HOST

    def __post_init__(self) -> None:
        _check_layout("neo4j", self.layout)
        self.settings()  # validates the URI
        if not self.sink:
            object.__setattr__(self, "sink", self.group)

    def settings(self) -> Neo4jSettings:
        """The connection settings, password resolved. Raises ConfigError for a URI without a Bolt scheme."""
        return Neo4jSettings(uri=self.uri, user=self.user, database=self.database,
                             password=self.password.value if self.password else None)  # fmt: skip


@dataclass(frozen=True)
class QdrantConfig:
    """The Qdrant destination and its sink: a server ``url`` or a local-mode ``path``."""

    url: str | None = None
    path: Path | None = None
    collection: str = QdrantSettings.collection
    vector_size: int = DIMENSIONS
    distance: str = DISTANCE
    api_key: Secret | None = None
    layout: Layout = "caxton"
    group: str = DEFAULT_QDRANT_GROUP
    sink: str = ""
    batch: BatchConfig = field(default_factory=BatchConfig)
    encode_batch: int = DEFAULT_ENCODE_BATCH
    #: The sink's endpoint; with a local ``path`` it is how lag, cutover and rollback read the
    #: collection the running sink holds open (they ask 127.0.0.1:<metrics_port>).
    metrics_port: int | None = None
    metrics_host: str = DEFAULT_HOST

    def __post_init__(self) -> None:
        _check_layout("qdrant", self.layout)
        if (self.url is None) == (self.path is None):
            raise ConfigError("qdrant: give exactly one of url (a server) and path (local mode)",
                              hint="url: http://localhost:6333, or path: ./data/qdrant; remove the other")  # fmt: skip
        self.settings()
        if self.vector_size != DIMENSIONS:
            raise ConfigError(
                f"qdrant.vector_size {self.vector_size} is not the model's: all-MiniLM-L6-v2 gives {DIMENSIONS}-d",
                hint=f"set vector_size: {DIMENSIONS} (or remove it)",
            )
        if self.distance.lower() != DISTANCE.lower():
            raise ConfigError(
                f"qdrant.distance {self.distance!r} is not supported: the sink's vectors are compared by cosine",
                hint=f"set distance: {DISTANCE} (or remove it)",
            )
        if self.api_key is not None and self.url is None:
            raise ConfigError("qdrant.api_key is only used with a server url", hint="remove api_key with a local path")
        if not self.sink:
            object.__setattr__(self, "sink", self.group)

    def settings(self) -> QdrantSettings:
        """Where the collection is. Raises ConfigError unless exactly one of url and path is given."""
        return QdrantSettings(url=self.url, path=self.path, collection=self.collection)


@dataclass(frozen=True)
class CutoverPolicy:
    """When and how far ``cutover`` (and ``migrate``) may go; bounds as CutoverPlan checks them."""

    target: Target | None = None  # None: what the destinations configured give (both: hybrid)
    max_pause_s: float = CutoverPlan.max_pause_s
    max_lag: int = CutoverPlan.max_lag
    writer_wait_s: float = WRITER_WAIT_S
    postpone_flag: Path | None = None
    confirm: bool = False  # wait for an operator's confirmation before the fence
    #: After a switch to Neo4j, capture its writes and replicate them back (docs/reverse.md; needs the
    #: changelog plugin in Neo4j): ``cutover --no-reverse`` when false.
    reverse: bool = True

    def __post_init__(self) -> None:
        if self.target is not None and self.target not in TARGETS:
            raise ConfigError(f"cutover.target {self.target!r} is unknown", hint="use neo4j, qdrant or hybrid")
        # CutoverPlan is the one place the bounds are checked; build one to check them here too.
        CutoverPlan(db=Path("x"), config=Path("x"), target=self.target or "hybrid", max_pause_s=self.max_pause_s,
                    max_lag=self.max_lag, writer_wait_s=self.writer_wait_s)  # fmt: skip


@dataclass(frozen=True)
class ValidationConfig:
    """The seed's ``validation:`` section: what to compare before the switch."""

    sample_queries: int | None = None  # None: each command's own (cutover 0, validate 100)
    consistency_checks: bool = True
    performance_comparison: bool = False

    def __post_init__(self) -> None:
        if not self.consistency_checks:
            raise ConfigError(
                "validation.consistency_checks: false is refused: every cutover compares the destinations with "
                "the store before it switches (the promise: no memory lost)",
                hint="remove the key, or set it to true",
            )
        if self.sample_queries is not None and self.sample_queries < 0:
            raise ConfigError("validation.sample_queries must not be negative", hint="e.g. 100")


@dataclass(frozen=True)
class MigrationConfig:
    """The whole migration: store, transport, the destinations (None: not migrated to), policy. A file
    may name no destination (e.g. one for the source only); ``target`` then raises."""

    store: StoreConfig = field(default_factory=StoreConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    source: SourceOptions = field(default_factory=SourceOptions)
    neo4j: Neo4jConfig | None = None
    qdrant: QdrantConfig | None = None
    cutover: CutoverPolicy = field(default_factory=CutoverPolicy)
    strategy: Strategy = "live"
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy {self.strategy!r} is unknown", hint="use live or blue-green")
        wanted = self.cutover.target
        if wanted in ("neo4j", "hybrid") and self.neo4j is None:
            raise ConfigError(f"cutover.target {wanted} needs a neo4j: section", hint="add one, or change the target")
        if wanted in ("qdrant", "hybrid") and self.qdrant is None:
            raise ConfigError(f"cutover.target {wanted} needs a qdrant: section", hint="add one, or change the target")

    @property
    def target(self) -> Target:
        """The cutover target: the policy's, else what the destinations configured give."""
        if self.cutover.target is not None:
            return self.cutover.target
        if self.neo4j is not None and self.qdrant is not None:
            return "hybrid"
        if self.neo4j is None and self.qdrant is None:
            raise ConfigError("the configuration names no destination", hint="add a neo4j: section, a qdrant: or both")
        return "neo4j" if self.neo4j is not None else "qdrant"


@dataclass(frozen=True)
class LoadedConfig:
    """A configuration file, loaded: the configuration, what the loader warns about (each naming its
    key), and the file it came from."""

    config: MigrationConfig
    warnings: tuple[str, ...]
    source_path: Path


def _check_layout(section: str, layout: str) -> None:
    if layout not in LAYOUTS:
        raise ConfigError(f"{section}.layout {layout!r} is unknown", hint="use caxton or mcp")
