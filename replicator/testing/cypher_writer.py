"""An agent writing to Neo4j through Cypher after a cutover (the reverse-rollback tests and
bench/rollback_pause.py): creates, observation changes, renames, confidence, relations, deletes, at
about 50 writes/s, counting the writes Neo4j refused (the rollback's fence). Blocking (a thread)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Protocol

import neo4j


class CypherGraph(Protocol):
    """The graph the writer writes to: its entity label and one statement at a time."""

    @property
    def label(self) -> str: ...

    def q(self, cypher: str, **params: object) -> list[neo4j.Record]: ...


class CypherWriter:
    """An agent writing to Neo4j through Cypher: creates, observation changes, renames, relations, deletes."""

    def __init__(self, graph: CypherGraph, seed: int = 7) -> None:
        self.graph, self.rng, self.done, self.errors = graph, random.Random(seed), 0, 0
        self.refused, self.refusal = 0, ""
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _op(self) -> None:
        lab, rng, q = self.graph.label, self.rng, self.graph.q
        pick = f"MATCH (n:{lab}) WITH n ORDER BY rand() LIMIT 1"
        choice = rng.random()
        if choice < 0.3:
            q(f"CREATE (:{lab} {{name: $n, entity_type: 'note', observations: ['new'], created_at: 1, updated_at: 1}})",
              n=f"w{uuid.uuid4().hex[:10]}")  # fmt: skip
        elif choice < 0.5:
            q(f"{pick} SET n.observations = n.observations + $o, n.updated_at = timestamp()", o=f"o{self.done}")
        elif choice < 0.6:
            q(f"{pick} SET n.observations = n.observations[1..], n.confidence = rand()")
        elif choice < 0.7:
            q(f"{pick} SET n.name = n.name + '_r'")
        elif choice < 0.85:
            q(
                f"MATCH (a:{lab}) WITH a ORDER BY rand() LIMIT 1 MATCH (b:{lab}) WHERE b <> a "
                f"WITH a, b ORDER BY rand() LIMIT 1 WHERE NOT (a)-[:LINKS]->(b) "
                f"CREATE (a)-[:LINKS {{relation_type: 'LINKS', strength: 0.5}}]->(b)"
            )
        elif choice < 0.93:
            q(f"MATCH (:{lab})-[r]->(:{lab}) WITH r ORDER BY rand() LIMIT 1 DELETE r")
        else:
            q(f"{pick} DETACH DELETE n")

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self._op()
                self.done += 1
            except (neo4j.exceptions.ServiceUnavailable, neo4j.exceptions.SessionExpired, OSError):
                self.errors += 1  # Neo4j is restarting: the write did not happen (or will show in the graph)
                time.sleep(0.5)
            except neo4j.exceptions.Neo4jError as exc:  # the rollback's fence: the write did not happen
                self.refused += 1
                self.refusal = str(exc)
            time.sleep(0.02)  # ~50 writes/s
