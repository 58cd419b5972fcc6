"""Agents writing to Neo4j through Cypher after a cutover (the reverse-rollback tests and
bench/rollback_pause.py): creates, observation changes, renames, confidence, relations, deletes, at a
paced rate (50 writes/s by default), in the caxton layout (CypherWriter) or the mcp layout
(McpCypherWriter). Blocking (a thread); see PacedWriter for what they count."""

from __future__ import annotations

import uuid
from typing import Protocol

import neo4j

from replicator.testing.paced import STARTING, PacedWriter, Unavailable

# Why the writers create with ``MERGE`` on the name, as mcp-neo4j-memory does: while Neo4j stops, the
# driver's execute_query retries transactions that failed with errors it deems transient, and some of
# them had committed, so a plain ``CREATE`` can run twice with the same name. Measured with 4 threads
# of CREATE and a unique name each, restarting Neo4j every 3 s: 4 names doubled in 4 restarts, 2 of
# them in the first, where no error reached the writers at all (726 nodes for 722 acknowledged). The
# store's UNIQUE name then refuses the second entity and reverse replication sets it aside
# (docs/reverse.md): the product's case, tested on its own, not this writer's subject.


class CypherGraph(Protocol):
    """The graph the writer writes to: its entity label and one statement at a time."""

    @property
    def label(self) -> str: ...

    def q(self, cypher: str, **params: object) -> list[neo4j.Record]: ...


class CypherWriter(PacedWriter):
    """An agent writing the caxton layout through Cypher: creates, observation changes, renames,
    relations, deletes. A subclass writes another layout by changing the statements that differ."""

    #: What differs by layout: how an entity is created (``$n``: its name; ``{lab}``: the entity
    #: label), how an observation is added (``$o``) and one taken away, a new relationship's properties.
    CREATE = ("MERGE (n:{lab} {{name: $n}}) ON CREATE SET n.entity_type = 'note', n.observations = ['new'], "
              "n.created_at = 1, n.updated_at = 1")  # fmt: skip
    ADD = "SET n.observations = n.observations + $o, n.updated_at = timestamp()"
    TAKE = "SET n.observations = n.observations[1..], n.confidence = rand()"
    LINK_PROPERTIES = " {relation_type: 'LINKS', strength: 0.5}"
    NAME_PREFIX = "w"

    def __init__(self, graph: CypherGraph, seed: int = 7, rate_per_s: float = 50.0) -> None:
        super().__init__(rate_per_s, seed)
        self.graph = graph

    def _write(self) -> str | None:
        try:
            self._op()
        except (neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.SessionExpired, OSError) as exc:
            raise Unavailable(str(exc)) from exc
        except neo4j.exceptions.Neo4jError as exc:  # the rollback's fence (or a failure the caller shows)
            if exc.code == STARTING:
                raise Unavailable(str(exc)) from exc
            return str(exc)
        return None

    def _ops(self, lab: str) -> tuple[tuple[float, str], ...]:
        """(upper bound of the draw, statement): 30% creates (MERGE: see the note above CypherGraph),
        20% observations added, 10% taken away, 10% renames, 15% relations, 8% relation deletes, 7%
        entity deletes."""
        pick = f"MATCH (n:{lab}) WITH n ORDER BY rand() LIMIT 1"
        return (
            (0.3, self.CREATE.format(lab=lab)),
            (0.5, f"{pick} {self.ADD}"),
            (0.6, f"{pick} {self.TAKE}"),
            (0.7, f"{pick} SET n.name = n.name + '_r'"),
            (0.85, f"MATCH (a:{lab}) WITH a ORDER BY rand() LIMIT 1 MATCH (b:{lab}) WHERE b <> a "
                   "WITH a, b ORDER BY rand() LIMIT 1 WHERE NOT (a)-[:LINKS]->(b) "
                   f"CREATE (a)-[:LINKS{self.LINK_PROPERTIES}]->(b)"),
            (0.93, f"MATCH (:{lab})-[r]->(:{lab}) WITH r ORDER BY rand() LIMIT 1 DELETE r"),
            (1.0, f"{pick} DETACH DELETE n"),
        )  # fmt: skip

    def _op(self) -> None:
        choice = self.rng.random()
        cypher = next(c for bound, c in self._ops(self.graph.label) if choice < bound)
        self.graph.q(cypher, n=f"{self.NAME_PREFIX}{uuid.uuid4().hex[:10]}", o=f"o{self.done}")


class McpCypherWriter(CypherWriter):
    """An agent writing the mcp layout through Cypher: ``:Memory`` nodes with ``type`` and a list of
    observations (adopted by the plugin), observation changes, renames, relationships named by their
    type alone, deletes."""

    CREATE = "MERGE (n:Memory {{name: $n}}) ON CREATE SET n.type = 'note', n.observations = ['new']"
    ADD = "SET n.observations = n.observations + $o"
    TAKE = "SET n.observations = n.observations[1..]"
    LINK_PROPERTIES = ""
    NAME_PREFIX = "c"
