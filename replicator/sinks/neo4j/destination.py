"""The Neo4j destination of the sink runner (design §7): plan a batch (pure), apply it with its
position in one managed transaction."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import neo4j

from replicator.errors import Kind
from replicator.position import SinkPosition
from replicator.sinks.batch import Batch
from replicator.sinks.neo4j import applier, faults
from replicator.sinks.neo4j.model import GraphModel, quote
from replicator.sinks.neo4j.planner import plan
from replicator.sinks.settings import Neo4jSettings

log = logging.getLogger(__name__)


class Neo4jDestination:
    """Applies entity and relation changes to a Neo4j graph. One driver, opened by ``start``.

    ``apply`` is idempotent (``_seq`` rules of the planner) and writes the batch and its position
    atomically. Every method raises the sink errors of ``faults``: DestinationUnavailable (retry),
    DestinationRefused (credentials, rights or database: fatal for the sink), PoisonEvent (a change
    that breaks the envelope's rules, or a value the server refuses).
    """

    def __init__(self, name: str, settings: Neo4jSettings, model: GraphModel | None = None) -> None:
        self.name = name
        self.settings = settings
        self.model = model or GraphModel()
        self._driver: neo4j.Driver | None = None
        #: What the last batch's transaction counted, until ``describe`` reports it (then read anew).
        self._counts: dict[str, int] | None = None
        #: Whether the server takes relationship types as parameters (read by ``start``).
        self._dynamic_types = False

    @property
    def driver(self) -> neo4j.Driver:
        if self._driver is None:
            self._driver = neo4j.GraphDatabase.driver(
                self.settings.uri,
                auth=self.settings.auth(),
                # Fail fast when the server is gone: the runner owns retrying (with partitions paused).
                connection_timeout=5.0,
                max_transaction_retry_time=5.0,
                connection_acquisition_timeout=10.0,
                notifications_min_severity="OFF",
            )
        return self._driver

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Raise any failure as the sink error of its kind, naming server, user and database. A fatal
        one also drops the driver: its pooled connections keep the state they authenticated with (an
        expired password stays expired on them), so the next call, a re-check, logs in afresh."""
        try:
            yield
        except Exception as exc:
            error = faults.translate(exc, self.settings)
            if error.kind is Kind.FATAL:
                self.close()
            raise error from exc

    def start(self) -> SinkPosition | None:
        """Create constraints/indexes and return the stored position. Blocks; idempotent. Logs a
        warning when the database holds tombstones of older versions (ignored; docs/sinks.md)."""
        with self._errors():
            applier.create_schema(self.driver, self.settings.database, self.model)
            legacy = applier.count_legacy_tombstones(self.driver, self.settings.database, self.model)
            self._dynamic_types = applier.supports_dynamic_types(self.driver, self.settings.database)
        if legacy:
            log.warning(
                "ignoring tombstones of an older version",
                extra={
                    "count": legacy,
                    "label": self.model.tombstone_label,
                    "hint": "they have no namespace and are not read any more; once every sink on this database "
                    "runs this version, remove them (docs/sinks.md, 'Tombstones of older versions')",
                },
            )
        return self.read_position()

    def read_position(self) -> SinkPosition | None:
        with self._errors():
            return applier.read_position(self.driver, self.name, database=self.settings.database, model=self.model)

    def apply(self, batch: Batch) -> None:
        position = batch.position(self.name, int(time.time() * 1000))
        with self._errors():
            _, todo, self._counts = applier.apply_plan(
                self.driver,
                self.settings.database,
                self.model,
                lambda stored, newest: plan(batch, self.model, stored, newest),
                position,
                store=batch.store(),
                oldest=min((e.seq or 0 for e in batch.changes()), default=0),
                dynamic_types=self._dynamic_types,
            )
        if todo.unusable_tombstones:
            log.warning(
                "tombstones without a seq header left unapplied",
                extra={"count": todo.unusable_tombstones, "hint": "only records of the replicator source are applied"},
            )

    def describe(self) -> dict[str, int]:
        """What the graph holds, for ``/position``: nodes with the entity label (placeholders
        included) and relationships leaving them. Both counts come from Neo4j's count store (O(1)).
        The runner asks after every batch: the first call after ``apply`` answers with the counts
        that batch's own transaction read (no round trip), any other reads them now. Blocks; raises
        DestinationUnavailable."""
        counts, self._counts = self._counts, None
        if counts is not None:
            return counts
        ent = quote(self.model.entity_label)
        with self._errors():
            nodes = applier.run_read(self.driver, self.settings.database, f"MATCH (n:{ent}) RETURN count(n) AS c")
            rels = applier.run_read(self.driver, self.settings.database, f"MATCH (:{ent})-[r]->() RETURN count(r) AS c")
        return {"entity_nodes": int(nodes[0]["c"]), "relations": int(rels[0]["c"])}

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None
