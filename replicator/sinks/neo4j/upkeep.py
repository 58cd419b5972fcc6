"""Bounded housekeeping the Neo4j applier runs in each batch's transaction (design §6). Cypher only,
run with ``$ns`` (the namespace: entity label) and ``$store`` (its owner); every statement touches at
most ``BUDGET`` nodes or relationships, so a transaction never grows with the size of the graph.

* **Detaching nodes** (deleted hubs, see ``cypher.detach_or_hide``): delete up to BUDGET of their
  relationships, then the nodes left without any.
* **Tombstone collection**: a tombstone with seq ``s`` only stops an *older* change of its row that
  is still to come. Every event a sink reads after its stored position on a partition has a seq above
  that partition's last heartbeat (a heartbeat follows every change with seq <= its own), so once the
  watermark W of every sink writing the namespace is >= s, nothing older can come: tombstones with
  ``_seq <= min(W)`` are deleted (up to BUDGET per transaction). A sink that never applied a
  heartbeat (W unknown) keeps them all.
* **Sweep** (once per snapshot S, see ``SinkPosition.sweep_due``): when the watermark reached S, every
  row of the store was applied with a seq >= S; a node or relationship with ``_seq < S`` was deleted
  before that snapshot read the store, in a gap no changelog recorded. Such rows go (entities as in a
  delete: bounded), and so do placeholders nothing points to any more. The sweep is done when a
  transaction's statements each removed less than BUDGET (nothing of their kind is left).
"""

from __future__ import annotations

from typing import Final

from replicator.sinks.neo4j.cypher import detach_or_hide
from replicator.sinks.neo4j.model import GraphModel, quote

#: Nodes or relationships one housekeeping statement touches at most.
BUDGET: Final = 1000


def finish_query(model: GraphModel) -> str:
    """The end of every batch transaction, in one round trip: empty detaching nodes (BUDGET
    relationships, then the nodes left without any), collect tombstones no sink of the namespace can
    still need, and store the position. ``$watermark`` is this sink's as of this transaction; the
    other sinks' are on their position nodes. Returns ``detached``, ``collected`` and what the graph
    holds as of this transaction (``entity_nodes``, ``relations``: count-store reads, O(1)), so the
    sink's ``/position`` needs no read of its own after a batch."""
    ent, tomb, pos = quote(model.entity_label), quote(model.tombstone_label), quote(model.position_label)
    return (
        f"CALL () {{ MATCH (d:{tomb})-[r]-() WHERE d.detaching IS NOT NULL AND d.ns = $ns "
        f"WITH DISTINCT r LIMIT {BUDGET} DELETE r RETURN count(r) AS detached }} "
        f"CALL () {{ MATCH (d:{tomb}) WHERE d.detaching IS NOT NULL AND d.ns = $ns AND NOT EXISTS {{ (d)--() }} "
        f"WITH d LIMIT {BUDGET} DELETE d RETURN count(d) AS emptied }} "
        f"CALL () {{ OPTIONAL MATCH (p:{pos}) WHERE p.namespace = $ns AND p.sink <> $sink "
        "WITH min(p.watermark_seq) AS others "
        "WITH CASE WHEN others IS NULL OR others > $watermark THEN $watermark ELSE others END AS w "
        f"MATCH (t:{tomb} {{ns: $ns, store: $store}}) WHERE t._seq <= w AND t.kind IS NOT NULL "
        f"WITH t LIMIT {BUDGET} DELETE t RETURN count(t) AS collected }} "
        f"CALL () {{ MATCH (n:{ent}) RETURN count(n) AS entity_nodes }} "
        f"CALL () {{ MATCH (:{ent})-[r]->() RETURN count(r) AS relations }} "
        f"MATCH (p:{pos} {{sink: $sink}}) SET p.position = $position, p.namespace = $ns, p.watermark_seq = $watermark "
        "RETURN detached + emptied AS detached, collected, entity_nodes, relations"
    )


def sweep_queries(model: GraphModel) -> list[str]:
    """Remove rows older than the snapshot ``$snapshot`` (a gap's deletes). Each returns ``removed``."""
    ent = quote(model.entity_label)
    return [
        f"MATCH (:{ent})-[r]->() WHERE r._seq < $snapshot WITH r LIMIT {BUDGET} DELETE r RETURN count(r) AS removed",
        f"MATCH (n:{ent}) WHERE n._seq < $snapshot WITH n LIMIT {BUDGET} "
        + detach_or_hide(model, "n", "$snapshot")
        + " RETURN count(*) AS removed",
        f"MATCH (n:{ent}) WHERE n._placeholder AND NOT EXISTS {{ (n)--() }} "
        f"WITH n LIMIT {BUDGET} DELETE n RETURN count(n) AS removed",
    ]


def legacy_tombstones_query(model: GraphModel) -> str:
    """Tombstones written before tombstones had a namespace (``(kind, id)`` only). Returns ``removed``."""
    tomb = quote(model.tombstone_label)
    return f"MATCH (t:{tomb}) WHERE t.ns IS NULL AND t.kind IS NOT NULL RETURN count(t) AS removed"
