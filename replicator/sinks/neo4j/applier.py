"""The thin half of the Neo4j sink: run a Plan and the batch's position in ONE managed transaction.

``execute_write`` retries transient failures (deadlocks, leader switches) by re-running the whole
function; everything in it is idempotent by ``_seq``, and the position merge reads the stored position
inside the same transaction (after locking its node), so two sink instances of one group never lose
each other's offsets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final, LiteralString

import neo4j

from replicator.errors import Fatal, Kind, ReplicatorError
from replicator.position import SinkPosition
from replicator.sinks.batch import StoreMismatch
from replicator.sinks.errors import DestinationUnavailable
from replicator.sinks.neo4j import faults, layout, upkeep
from replicator.sinks.neo4j.model import GraphModel, position_query, quote
from replicator.sinks.neo4j.planner import Plan


class NamespaceTaken(Fatal):
    """The sink's name already keys the position of a sink writing another namespace."""


def _q(text: str) -> LiteralString:
    # Our queries are built from quoted identifiers of the model and fixed text; values are parameters.
    return text


def schema_statements(model: GraphModel) -> list[str]:
    """Constraints and indexes for the configured labels (idempotent: IF [NOT] EXISTS). Drops the
    ``(kind, id)`` tombstone constraint of older versions: it would refuse two namespaces' tombstones
    of one id (their nodes are ignored now, see docs/sinks.md)."""
    ent, tomb, pos = quote(model.entity_label), quote(model.tombstone_label), quote(model.position_label)
    base, tbase, pbase = model.entity_label.lower(), model.tombstone_label.lower(), model.position_label.lower()
    return [
        f"CREATE CONSTRAINT {quote(base + '_id_unique')} IF NOT EXISTS FOR (n:{ent}) REQUIRE n.id IS UNIQUE",
        f"CREATE INDEX {quote(base + '_name')} IF NOT EXISTS FOR (n:{ent}) ON (n.name)",
        f"CREATE INDEX {quote(base + '_seq')} IF NOT EXISTS FOR (n:{ent}) ON (n._seq)",
        # The cutover counts placeholders under its fence: an index seek, not a scan of every entity.
        f"CREATE INDEX {quote(base + '_placeholder')} IF NOT EXISTS FOR (n:{ent}) ON (n._placeholder)",
        f"DROP CONSTRAINT {quote(tbase + '_kind_id_unique')} IF EXISTS",
        f"CREATE CONSTRAINT {quote(tbase + '_ns_store_kind_id_unique')} IF NOT EXISTS "
        f"FOR (t:{tomb}) REQUIRE (t.ns, t.store, t.kind, t.id) IS UNIQUE",
        f"CREATE INDEX {quote(tbase + '_ns_store_seq')} IF NOT EXISTS FOR (t:{tomb}) ON (t.ns, t.store, t._seq)",
        f"CREATE INDEX {quote(tbase + '_detaching')} IF NOT EXISTS FOR (t:{tomb}) ON (t.detaching)",
        f"CREATE CONSTRAINT {quote(pbase + '_sink_unique')} IF NOT EXISTS FOR (p:{pos}) REQUIRE p.sink IS UNIQUE",
        f"CREATE CONSTRAINT {quote(pbase + '_owner_unique')} IF NOT EXISTS FOR (p:{pos}) REQUIRE p.owner IS UNIQUE",
        *([layout.search_index_statement()] if model.layout == layout.MCP else []),
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


#: What a concurrent creator's schema rule makes a CREATE ... IF NOT EXISTS answer: the goal holds.
_ALREADY_EXISTS: Final = frozenset({
    "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists",
    "Neo.ClientError.Schema.IndexAlreadyExists",
    "Neo.ClientError.Schema.ConstraintAlreadyExists",
})  # fmt: skip


def create_schema(driver: neo4j.Driver, database: str, model: GraphModel) -> None:
    """Create constraints and indexes. Idempotent, also against another instance doing the same at
    once; blocks. Raises DestinationUnavailable when down."""
    try:
        for statement in schema_statements(model):
            try:
                driver.execute_query(_q(statement), database_=database)
            except neo4j.exceptions.ClientError as exc:
                # Another instance of the group created the same rule at the same moment: Neo4j may
                # answer IF NOT EXISTS with "already exists" while the other's is being committed.
                if exc.code not in _ALREADY_EXISTS:
                    raise
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(f"database {database}", exc) from exc
        raise


def _lock_and_claim_tx(
    tx: neo4j.ManagedTransaction, model: GraphModel, sink: str, store: str | None, oldest: int
) -> tuple[SinkPosition | None, str | None, int]:
    """Lock this sink's position node (MERGE + SET takes its write lock: concurrent instances of one
    group serialise here), read it, read the store owning the namespace (claimed for ``store`` if
    none does yet) and the highest ``_seq`` of the namespace's tombstones at or above ``oldest`` (the
    lowest seq of the batch's changes; 0: none; read from the ``(ns, store, _seq)`` index, whose
    entries tombstone collection keeps few), which tells the planner which upserts no tombstone can
    stop. One round trip. Raises NamespaceTaken when another namespace's sink (another entity label)
    stores its position under this sink name, StoreMismatch when another store owns the namespace:
    one namespace replicates one store, so the seqs it compares are comparable."""
    query = (
        f"MERGE (p:{quote(model.position_label)} {{sink: $sink}}) SET p._lock = coalesce(p._lock, 0) + 1 "
        f"MERGE (o:{quote(model.position_label)} {{owner: $ns}}) ON CREATE SET o.since_ms = timestamp() "
        # A namespace written before layouts existed (a store, no layout) holds the caxton layout.
        f"SET o.layout = coalesce(o.layout, CASE WHEN o.store IS NULL THEN $layout ELSE '{layout.CAXTON}' END) "
        "SET o.store = coalesce(o.store, $store) "
        f"WITH p, o CALL () {{ MATCH (t:{quote(model.tombstone_label)}) WHERE t.ns = $ns AND t.store = $store "
        "AND t._seq >= $oldest RETURN max(t._seq) AS newest } "
        "RETURN p.position AS position, p.namespace AS namespace, o.store AS owner, o.layout AS layout, newest"
    )
    params = {"sink": sink, "ns": model.namespace, "store": store, "layout": model.layout, "oldest": oldest}
    record = tx.run(_q(query), params).single()
    assert record is not None
    if record["namespace"] is not None and record["namespace"] != model.namespace:
        raise NamespaceTaken(
            f"sink name {sink!r} already keeps the position of the sink writing label {record['namespace']!r} "
            f"in this database; this sink writes label {model.namespace!r}",
            hint="give each pipeline its own --sink-name (or --group)",
        )
    if record["layout"] != model.layout:
        raise NamespaceTaken(
            f"label {model.namespace!r} holds the {record['layout']} layout; "
            f"this sink writes the {model.layout} layout",
            hint=f"run the sink with --layout {record['layout']}, or give the {model.layout} layout its own "
            "--entity-label (docs/layouts.md)",
        )
    owner = None if record["owner"] is None else str(record["owner"])
    if store is not None and owner is not None and owner != store:
        raise StoreMismatch(
            f"label {model.namespace!r} holds the graph of store {owner}; this sink's events come from "
            f"store {store} (another store, or this one after `source uninstall --forget-identity`)",
            hint="replicate each store into its own --entity-label; to replace the old graph instead, delete "
            "its nodes and the owner node (docs/sinks.md, 'Namespaces')",
        )
    text = record["position"]
    newest = 0 if record["newest"] is None else int(record["newest"])
    return (None if text is None else SinkPosition.from_json(str(text))), owner, newest


def read_position(
    driver: neo4j.Driver, sink: str, *, database: str = "neo4j", model: GraphModel | None = None
) -> SinkPosition | None:
    """The position stored for ``sink`` (None if it never applied a batch). Blocks; raises
    DestinationUnavailable when Neo4j cannot be reached."""
    try:
        return driver.execute_query(
            _q(position_query(model or GraphModel())),
            sink=sink,
            database_=database,
            result_transformer_=lambda r: _parse(r.single()),
        )
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(f"database {database}", exc) from exc
        raise


def supports_dynamic_types(driver: neo4j.Driver, database: str) -> bool:
    """Whether the server takes relationship types as parameters (``$(expr)``: Neo4j 5.26 and later,
    calendar versions 2025.x included). False when the version cannot be read (the per-type
    statements work everywhere). Blocks; raises DestinationUnavailable when Neo4j is down."""
    try:
        records, _, _ = driver.execute_query(
            "CALL dbms.components() YIELD versions RETURN versions[0] AS version", database_=database
        )
    except neo4j.exceptions.ClientError:
        return False
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(f"database {database}", exc) from exc
        raise
    try:
        major, minor = (int(p) for p in str(records[0]["version"]).split(".")[:2])
    except (IndexError, ValueError):
        return False
    return (major, minor) >= (5, 26)


def count_legacy_tombstones(driver: neo4j.Driver, database: str, model: GraphModel) -> int:
    """Tombstones of versions that keyed them by (kind, id) alone. Blocks; raises DestinationUnavailable."""
    try:
        records, _, _ = driver.execute_query(_q(upkeep.legacy_tombstones_query(model)), database_=database)
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(f"database {database}", exc) from exc
        raise
    return int(records[0]["removed"]) if records else 0


def _parse(record: neo4j.Record | None) -> SinkPosition | None:
    return None if record is None or record["position"] is None else SinkPosition.from_json(str(record["position"]))


def _removed(tx: neo4j.ManagedTransaction, query: str, **params: object) -> int:
    record = tx.run(_q(query), params).single()
    return 0 if record is None else int(record["removed"])


def _sweep_tx(tx: neo4j.ManagedTransaction, model: GraphModel, merged: SinkPosition, store: str) -> SinkPosition:
    """When a snapshot's sweep is due (``upkeep``), one bounded step of it; ``merged`` with the sweep
    recorded once a step left nothing behind."""
    due = merged.sweep_due()
    if due is None:
        return merged
    removed = [_removed(tx, q, snapshot=due, ns=model.namespace, store=store) for q in upkeep.sweep_queries(model)]
    return replace(merged, swept_seq=due) if all(n < upkeep.BUDGET for n in removed) else merged


def apply_plan(
    driver: neo4j.Driver,
    database: str,
    model: GraphModel,
    planner: Callable[[SinkPosition | None, int], Plan],
    position: SinkPosition,
    *,
    store: str | None,
    oldest: int = 0,
    dynamic_types: bool = False,
) -> tuple[SinkPosition, Plan, dict[str, int]]:
    """Run ``planner(stored position, newest tombstone seq)``'s plan, bounded upkeep and store
    ``position`` merged into the stored one, in one transaction (the stored position is read under its
    lock, so the plan can leave out what it already covers; the newest tombstone lets it leave out the
    tombstone reads of upserts newer than every tombstone; ``oldest``: the lowest seq of the batch's
    changes, below which no tombstone matters to it; ``store`` is the batch's, checked against the
    namespace's owner).
    Two round trips besides the plan's statements (relation upserts: one statement, or one per
    relationship type unless ``dynamic_types``, see ``supports_dynamic_types``). Returns the stored
    position, the plan and what the graph holds as of the commit (``entity_nodes``, ``relations``,
    as ``describe`` reports).
    Idempotent. Raises DestinationUnavailable (retry later), StoreMismatch / NamespaceTaken (fatal:
    another store, or another pipeline's sink name), or the server's ClientError (the data was
    refused: ``faults.translate`` says whether it is the data's or the destination's)."""

    def work(tx: neo4j.ManagedTransaction) -> tuple[SinkPosition, Plan, dict[str, int]]:
        stored, owner, newest = _lock_and_claim_tx(tx, model, position.sink, store, oldest)
        plan = planner(stored, newest)
        scope = owner or store or ""  # tombstones of a batch of tombstones only: the owner's
        for statement in plan.statements(model, dynamic_types):
            tx.run(_q(statement.query), rows=statement.rows, ns=model.namespace, store=scope).consume()
        merged = _sweep_tx(tx, model, position if stored is None else stored.merged(position), scope)
        mark = merged.watermark()
        finished = tx.run(
            _q(upkeep.finish_query(model)),
            sink=position.sink,
            position=merged.to_json(),
            watermark=0 if mark is None else mark.seq,
            ns=model.namespace,
            store=scope,
        ).single()
        assert finished is not None
        return merged, plan, {"entity_nodes": int(finished["entity_nodes"]), "relations": int(finished["relations"])}

    try:
        with driver.session(database=database) as session:
            # The metadata lets the sink's writes through a rollback's fence (docs/reverse.md).
            return session.execute_write(neo4j.unit_of_work(metadata=SINK_METADATA)(work))
    except ReplicatorError:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise unavailable(f"database {database}", exc) from exc
        raise


#: Transaction metadata of the sink's writes: the changelog plugin lets them pass its fence.
SINK_METADATA: Final = {"replicator": "sink"}


def run_read(driver: neo4j.Driver, database: str, query: str, **params: object) -> list[dict[str, Any]]:
    """Run a read query and return its records as dicts (tests, bench, validation)."""
    records, _, _ = driver.execute_query(_q(query), params, database_=database, routing_=neo4j.RoutingControl.READ)
    return [dict(r) for r in records]
