"""The thin half of the Neo4j sink: run a Plan and the batch's position in ONE managed transaction.

``execute_write`` retries transient failures (deadlocks, leader switches) by re-running the whole
function; everything in it is idempotent by ``_seq``, and the position merge reads the stored position
inside the same transaction (after locking its node), so two sink instances of one group never lose
each other's offsets.
"""

from __future__ import annotations

from typing import Any, LiteralString

import neo4j

from replicator.errors import Kind, ReplicatorError
from replicator.position import SinkPosition
from replicator.sinks.errors import DestinationUnavailable
from replicator.sinks.neo4j import faults
from replicator.sinks.neo4j.model import GraphModel, quote
from replicator.sinks.neo4j.planner import Plan


def _q(text: str) -> LiteralString:
    # Our queries are built from quoted identifiers of the model and fixed text; values are parameters.
    return text


def schema_statements(model: GraphModel) -> list[str]:
    """Constraints and indexes for the configured labels (idempotent: IF NOT EXISTS)."""
    ent, tomb, pos = quote(model.entity_label), quote(model.tombstone_label), quote(model.position_label)
    base = model.entity_label.lower()
    return [
        f"CREATE CONSTRAINT {quote(base + '_id_unique')} IF NOT EXISTS FOR (n:{ent}) REQUIRE n.id IS UNIQUE",
        f"CREATE INDEX {quote(base + '_name')} IF NOT EXISTS FOR (n:{ent}) ON (n.name)",
        f"CREATE CONSTRAINT {quote(model.tombstone_label.lower() + '_kind_id_unique')} IF NOT EXISTS "
        f"FOR (t:{tomb}) REQUIRE (t.kind, t.id) IS UNIQUE",
        f"CREATE CONSTRAINT {quote(model.position_label.lower() + '_sink_unique')} IF NOT EXISTS "
        f"FOR (p:{pos}) REQUIRE p.sink IS UNIQUE",
    ]


def unavailable(where: str, exc: BaseException) -> DestinationUnavailable:
    return DestinationUnavailable(
        f"Neo4j ({where}) is unavailable: {type(exc).__name__}: {exc}",
        hint="the sink retries with backoff; check the server (`replicator stack status`) if it lasts",
    )


def is_unavailable(exc: BaseException) -> bool:
    """Errors worth retrying the same batch for: the server is down, restarting or overloaded
    (``faults.kind``; the destination translates the others with their server, user and database)."""
    return faults.kind(exc) is Kind.RETRYABLE


def create_schema(driver: neo4j.Driver, database: str, model: GraphModel) -> None:
    """Create constraints and indexes. Idempotent; blocks. Raises DestinationUnavailable when down."""
    try:
        for statement in schema_statements(model):
            driver.execute_query(_q(statement), database_=database)
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(f"database {database}", exc) from exc
        raise


def _read_position_tx(tx: neo4j.ManagedTransaction, model: GraphModel, sink: str, lock: bool) -> SinkPosition | None:
    pos = quote(model.position_label)
    if lock:  # MERGE + SET takes the node's write lock: concurrent instances serialise here
        query = f"MERGE (p:{pos} {{sink: $sink}}) SET p._lock = coalesce(p._lock, 0) + 1 RETURN p.position AS position"
    else:
        query = f"MATCH (p:{pos} {{sink: $sink}}) RETURN p.position AS position"
    record = tx.run(_q(query), sink=sink).single()
    text = None if record is None else record["position"]
    return None if text is None else SinkPosition.from_json(str(text))


def read_position(
    driver: neo4j.Driver, sink: str, *, database: str = "neo4j", model: GraphModel | None = None
) -> SinkPosition | None:
    """The position stored for ``sink`` (None if it never applied a batch). Blocks; raises
    DestinationUnavailable when Neo4j cannot be reached."""
    try:
        return driver.execute_query(
            _q(f"MATCH (p:{quote((model or GraphModel()).position_label)} {{sink: $sink}}) RETURN p.position AS p"),
            sink=sink,
            database_=database,
            result_transformer_=lambda r: _parse(r.single()),
        )
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(f"database {database}", exc) from exc
        raise


def _parse(record: neo4j.Record | None) -> SinkPosition | None:
    return None if record is None or record["p"] is None else SinkPosition.from_json(str(record["p"]))


def apply_plan(
    driver: neo4j.Driver, database: str, model: GraphModel, plan: Plan, position: SinkPosition
) -> SinkPosition:
    """Run ``plan`` and store ``position`` merged into the stored one, in one transaction. Returns the
    stored position. Idempotent. Raises DestinationUnavailable (retry later) or the driver's error
    (``faults.translate`` says whether it is the data's or the destination's)."""

    def work(tx: neo4j.ManagedTransaction) -> SinkPosition:
        stored = _read_position_tx(tx, model, position.sink, lock=True)
        for statement in plan.statements(model):
            tx.run(_q(statement.query), rows=statement.rows).consume()
        merged = position if stored is None else stored.merged(position)
        tx.run(
            _q(f"MATCH (p:{quote(model.position_label)} {{sink: $sink}}) SET p.position = $position"),
            sink=position.sink,
            position=merged.to_json(),
        ).consume()
        return merged

    try:
        with driver.session(database=database) as session:
            return session.execute_write(work)
    except ReplicatorError:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(f"database {database}", exc) from exc
        raise


def run_read(driver: neo4j.Driver, database: str, query: str, **params: object) -> list[dict[str, Any]]:
    """Run a read query and return its records as dicts (tests, bench, validation)."""
    records, _, _ = driver.execute_query(_q(query), params, database_=database, routing_=neo4j.RoutingControl.READ)
    return [dict(r) for r in records]
