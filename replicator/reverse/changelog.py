"""Neo4j's changelog, as the plugin writes it (``jvm/.../ChangelogListener.java``): the one owner of
that format on the Python side. Enabling capture for a namespace, proving the plugin is loaded,
reading whole transactions in commit order, the head (for lag), pruning what the store applied.

Graph layout (docs/reverse.md):

* ``(:ReplicatorReverse {ns, store, head_seq, head_ts_ms, next_entity_id, next_relation_id,
  enabled_at_ms, [adopt]})``: one per namespace (entity label); its presence turns capture on.
  ``adopt``: labels whose new nodes without the entity label and an id the plugin adopts as entities
  (the layout's ``adopted_labels``: ``Memory`` in the mcp layout).
* ``(:ReplicatorChange {ns, seq, n, ts_ms, kind, op, id, [from_id, to_id, rel_type], v.<prop>...})``:
  one per row a transaction changed; all rows of a transaction share ``seq``, ``n`` orders them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import neo4j

from replicator.errors import Fatal

CONFIG_LABEL: Final = "ReplicatorReverse"
CHANGE_LABEL: Final = "ReplicatorChange"
PROBE_LABEL: Final = "ReplicatorReverseProbe"
PREFIX: Final = "v."
_META: Final = frozenset({"ns", "seq", "n", "ts_ms", "kind", "op", "id", "from_id", "to_id", "rel_type"})
PRUNE_BATCH: Final = 1000

#: Runs one statement: ``run(cypher, **params)`` -> its records. Raises what the driver raises.
Run = Callable[..., list[neo4j.Record]]


class PluginMissing(Fatal):
    """Neo4j does not run the changelog plugin: changes made there would not be captured."""


class ReverseOff(Fatal):
    """Capture is not on for the namespace: nothing flows back from Neo4j."""


class NamespaceCaptured(Fatal):
    """The namespace's changelog belongs to another store."""


@dataclass(frozen=True)
class Change:
    """One row of the changelog: an entity or relationship after a transaction (``op`` u), or gone (d)."""

    seq: int
    n: int
    ts_ms: int
    kind: str  # entity | relation
    op: str  # u | d
    id: int
    props: dict[str, Any] = field(default_factory=dict)  # the image, under the graph's property names
    from_id: int | None = None
    to_id: int | None = None
    rel_type: str | None = None


def change_from_properties(p: Mapping[str, Any]) -> Change:
    """A Change from a changelog node's properties. Pure."""
    return Change(
        seq=int(p["seq"]), n=int(p["n"]), ts_ms=int(p["ts_ms"]), kind=str(p["kind"]), op=str(p["op"]),
        id=int(p["id"]), props={k[len(PREFIX):]: v for k, v in p.items() if k.startswith(PREFIX)},
        from_id=None if p.get("from_id") is None else int(p["from_id"]),
        to_id=None if p.get("to_id") is None else int(p["to_id"]),
        rel_type=None if p.get("rel_type") is None else str(p["rel_type"]),
    )  # fmt: skip


@dataclass(frozen=True)
class Head:
    """The namespace's last captured transaction: its seq and when it committed (0, 0: none yet)."""

    seq: int
    ts_ms: int
    store: str


class Changelog:
    """The changelog of one namespace in one database. Blocks; raises what ``run`` raises."""

    def __init__(self, run: Run, ns: str, adopt: Sequence[str] = ()) -> None:
        self._run = run
        self.ns = ns
        self.adopt = tuple(adopt)

    @classmethod
    def for_driver(cls, driver: neo4j.Driver, database: str, ns: str, adopt: Sequence[str] = ()) -> Changelog:
        def run(cypher: str, **params: object) -> list[neo4j.Record]:
            records, _, _ = driver.execute_query(cypher, parameters_=params, database_=database)
            return list(records)

        return cls(run, ns, adopt)

    def probe(self) -> bool:
        """Whether the plugin runs in this database: it stamps a probe node created in a transaction.
        Leaves nothing behind."""
        [row] = self._run(f"CREATE (p:{PROBE_LABEL}) RETURN elementId(p) AS e")
        [stamp] = self._run(
            f"MATCH (p:{PROBE_LABEL}) WHERE elementId(p) = $e WITH p, p.plugin AS v DELETE p RETURN v", e=row["e"]
        )
        return stamp["v"] is not None

    def enable(self, store: str, next_entity_id: int, next_relation_id: int) -> Head:
        """Turn capture on for the namespace, ids for rows created in Neo4j starting above the store's,
        new nodes of the ``adopt`` labels adopted. Idempotent (a second call keeps the head and counters,
        and sets ``adopt``). Raises PluginMissing before changing anything when the plugin is not loaded,
        NamespaceCaptured for another store's namespace."""
        if not self.probe():
            raise PluginMissing(
                "Neo4j does not run the replicator's changelog plugin: changes made there after the cutover "
                "would not flow back to the store",
                hint="put replicator-changelog.jar (`replicator reverse plugin --neo4j-lib <neo4j>/lib --out "
                "<neo4j>/plugins`) into Neo4j's plugins/ and restart it, or cut over with --no-reverse",
            )
        self._run(f"CREATE INDEX replicator_change_seq IF NOT EXISTS FOR (c:{CHANGE_LABEL}) ON (c.ns, c.seq)")
        self._run(
            f"CREATE CONSTRAINT replicator_reverse_ns IF NOT EXISTS FOR (c:{CONFIG_LABEL}) REQUIRE c.ns IS UNIQUE"
        )
        [row] = self._run(
            f"MERGE (c:{CONFIG_LABEL} {{ns: $ns}}) ON CREATE SET c.store = $store, c.head_seq = 0, c.head_ts_ms = 0, "
            "c.next_entity_id = $e, c.next_relation_id = $r, c.enabled_at_ms = $now RETURN c.store AS store",
            ns=self.ns, store=store, e=next_entity_id, r=next_relation_id, now=time.time_ns() // 1_000_000,
        )  # fmt: skip
        if row["store"] != store:
            raise NamespaceCaptured(
                f"Neo4j label {self.ns} already flows back to store {row['store']}, not {store}",
                hint="roll that migration back first, or cut over another label",
            )
        self._run(
            f"MATCH (c:{CONFIG_LABEL} {{ns: $ns}}) SET c.adopt = CASE WHEN size($adopt) = 0 THEN null ELSE $adopt END",
            ns=self.ns, adopt=list(self.adopt),
        )  # fmt: skip
        head = self.head()
        assert head is not None  # just merged
        return head

    def fence(self, message: str) -> Head:
        """Refuse every write to the namespace but the forward sink's, failing it with ``message``
        (rollback). Blocks until transactions committing into the changelog have committed; returns
        the head then: nothing can follow it. Idempotent. Raises ReverseOff when capture is off."""
        rows = self._run(
            f"MATCH (c:{CONFIG_LABEL} {{ns: $ns}}) SET c.fenced = $m "
            "RETURN c.head_seq AS s, c.head_ts_ms AS t, c.store AS store",
            ns=self.ns, m=message,
        )  # fmt: skip
        if not rows:
            raise ReverseOff(f"Neo4j label {self.ns} is not captured", hint="nothing flows back: see docs/reverse.md")
        return Head(int(rows[0]["s"]), int(rows[0]["t"]), str(rows[0]["store"]))

    def unfence(self) -> None:
        """Take writes again (an aborted rollback). Idempotent."""
        self._run(f"MATCH (c:{CONFIG_LABEL} {{ns: $ns}}) REMOVE c.fenced", ns=self.ns)

    def finish(self) -> None:
        """After a rollback: capture off, the fence kept (the runtime writes to the store again; only
        the forward sink writes here), the changelog dropped. Idempotent."""
        self._run(f"MATCH (c:{CONFIG_LABEL} {{ns: $ns}}) SET c.capture = false", ns=self.ns)
        self.prune(2**62)

    def resume(self) -> None:
        """At the end of a new cutover: the fence lifted, capture on again. Idempotent."""
        self._run(f"MATCH (c:{CONFIG_LABEL} {{ns: $ns}}) SET c.capture = true REMOVE c.fenced", ns=self.ns)

    def capturing(self) -> bool:
        """Whether capture is on for the namespace: False once a rollback finished (``finish``) or the
        namespace was disabled. Read-only."""
        rows = self._run(f"MATCH (c:{CONFIG_LABEL} {{ns: $ns}}) RETURN coalesce(c.capture, true) AS on", ns=self.ns)
        return bool(rows and rows[0]["on"])

    def head(self) -> Head | None:
        """The namespace's head, or None when capture is off for it."""
        rows = self._run(
            f"MATCH (c:{CONFIG_LABEL} {{ns: $ns}}) RETURN c.head_seq AS s, c.head_ts_ms AS t, c.store AS store",
            ns=self.ns,
        )
        return Head(int(rows[0]["s"]), int(rows[0]["t"]), str(rows[0]["store"])) if rows else None

    def read(self, after_seq: int, limit: int = 500) -> list[Change]:
        """The rows of whole transactions with seq > ``after_seq``, in commit order (seq, n): at least
        one transaction when there is one, however many rows it has."""
        rows = self._run(
            f"MATCH (c:{CHANGE_LABEL}) WHERE c.ns = $ns AND c.seq > $after RETURN properties(c) AS p "
            "ORDER BY c.seq, c.n LIMIT $limit",
            ns=self.ns, after=after_seq, limit=limit + 1,
        )  # fmt: skip
        changes = [change_from_properties(r["p"]) for r in rows]
        if len(changes) <= limit:
            return changes
        last = changes[-1].seq
        whole = [c for c in changes if c.seq != last]
        if whole:
            return whole
        # One transaction larger than ``limit``: read all of it.
        rows = self._run(
            f"MATCH (c:{CHANGE_LABEL}) WHERE c.ns = $ns AND c.seq = $seq RETURN properties(c) AS p ORDER BY c.n",
            ns=self.ns, seq=last,
        )  # fmt: skip
        return [change_from_properties(r["p"]) for r in rows]

    def oldest_ts_ms(self, after_seq: int) -> int | None:
        """When the first transaction past ``after_seq`` committed (for lag in seconds), None if none."""
        rows = self._run(
            f"MATCH (c:{CHANGE_LABEL}) WHERE c.ns = $ns AND c.seq > $after RETURN c.ts_ms AS t ORDER BY c.seq LIMIT 1",
            ns=self.ns, after=after_seq,
        )  # fmt: skip
        return int(rows[0]["t"]) if rows else None

    def prune(self, upto_seq: int) -> int:
        """Delete changelog rows with seq <= ``upto_seq`` (applied and committed in the store), at most
        PRUNE_BATCH per transaction. Idempotent. Returns how many were deleted."""
        deleted = 0
        while True:
            [row] = self._run(
                f"MATCH (c:{CHANGE_LABEL}) WHERE c.ns = $ns AND c.seq <= $upto WITH c LIMIT {PRUNE_BATCH} "
                "DELETE c RETURN count(*) AS n",
                ns=self.ns, upto=upto_seq,
            )  # fmt: skip
            deleted += int(row["n"])
            if int(row["n"]) < PRUNE_BATCH:
                return deleted

    def disable(self) -> None:
        """Turn capture off for the namespace and drop its changelog. Idempotent."""
        self._run(f"MATCH (c:{CONFIG_LABEL} {{ns: $ns}}) DELETE c", ns=self.ns)
        self.prune(2**62)
