"""A random but reproducible agent workload on a store, as Caxton's runtime would produce it:
entities created with their embedding, observations added and removed, renames, confidence edits,
relation churn with free-text (and hostile) relation types, and entity deletes that cascade.

Used by the end-to-end tests, the benchmarks and ``replicator demo``. Blocking; each step is one
or two writer transactions. A step raises sqlite3.Error as the writer would (e.g. once the store
refuses writes after a cutover); the caller decides what a failed write means.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import sqlite3
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from replicator.embedding import entity_text
from replicator.testing.writer import MemoryWriter

Vectorize = Callable[[str], Sequence[float]]

ENTITY_TYPES = ("person", "concept", "pattern", "project", "tool")
RELATION_TYPES = (
    "works_at",
    "depends on",
    "works-at",
    "relates_to",
    "\u0441\u0432\u044f\u0437\u0430\u043d \u0441",  # Russian for "linked with"
    "\u77e5\u9053",  # Chinese for "knows"
    "x`]->() DETACH DELETE n //",  # hostile: must round-trip, never run as Cypher
    "2fast",
)
WORDS = (
    "machine learning", "database", "optimization", "architecture", "error handling", "performance", "graph",
    "vector", "agent", "memory", "latency", "pattern", "schema", "kafka", "retry", "cache",
)  # fmt: skip


def hash_vector(text: str, dimensions: int = 384) -> list[float]:
    """A deterministic unit vector for ``text`` (not semantic): a cheap stand-in for the model where a
    test checks that vectors travel intact, not what they mean."""
    raw = b"".join(hashlib.sha256(f"{text}/{i}".encode()).digest() for i in range(dimensions * 4 // 32 + 1))
    values = [v / 2**31 for v in struct.unpack(f"<{dimensions}i", raw[: dimensions * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


@dataclass
class Workload:
    """Random operations against ``writer``. ``vectorize`` None: entities get no embedding."""

    writer: MemoryWriter
    seed: int = 0
    vectorize: Vectorize | None = hash_vector
    rng: random.Random = field(init=False)
    counter: int = 0
    done: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _entities(self) -> list[int]:
        return [int(r[0]) for r in self.writer.conn.execute("SELECT id FROM entities ORDER BY id")]

    def _relations(self) -> list[int]:
        return [int(r[0]) for r in self.writer.conn.execute("SELECT id FROM relations ORDER BY id")]

    def _vector_for(
        self, entity_id: int, name: str | None = None, observations: Sequence[str] | None = None
    ) -> Sequence[float] | None:
        """The vector of the entity's text once ``name``/``observations`` replace the current ones
        (None without a model or entity): written in the same transaction as the text, as the
        runtime does, so that no committed state (a cutover fence) holds a vector of older text."""
        row = self.writer.conn.execute(
            "SELECT name, entity_type, observations FROM entities WHERE id = ?", (entity_id,)
        ).fetchone()
        if self.vectorize is None or row is None:
            return None
        obs = list(json.loads(row[2])) if observations is None else list(observations)
        return self.vectorize(entity_text(str(row[0]) if name is None else name, str(row[1]), obs))

    def create(self) -> int:
        self.counter += 1
        name = f"{self.rng.choice(WORDS)} #{self.counter}-{self.seed}"
        entity_type = self.rng.choice(ENTITY_TYPES)
        observations = [self.rng.choice(WORDS) + f" note {i}" for i in range(self.rng.randint(0, 3))]
        vector = None if self.vectorize is None else self.vectorize(entity_text(name, entity_type, observations))
        return self.writer.create_entity(
            name, entity_type, observations, confidence=round(self.rng.random(), 3),
            metadata={"agent": f"agent-{self.rng.randint(1, 4)}"} if self.rng.random() < 0.5 else None,
            embedding=vector,
        )  # fmt: skip

    def step(self) -> str:
        """One random operation; returns its name. Raises sqlite3.Error from the writer."""
        entities = self._entities()
        choice = self.rng.random()
        if len(entities) < 3 or choice < 0.3:
            self.create()
            op = "create_entity"
        elif choice < 0.45:
            target = self.rng.choice(entities)
            observations = [*self.writer.observations(target), f"{self.rng.choice(WORDS)} seen {self.counter}"]
            self.writer.set_observations(target, observations, self._vector_for(target, observations=observations))
            op = "add_observations"
        elif choice < 0.5:
            target = self.rng.choice(entities)
            kept = self.writer.observations(target)[1:]
            self.writer.set_observations(target, kept, self._vector_for(target, observations=kept))
            op = "delete_observations"
        elif choice < 0.58:
            target = self.rng.choice(entities)
            self.counter += 1
            name = f"renamed {self.counter}-{self.seed} {self.rng.choice(WORDS)}"
            self.writer.rename(target, name, self._vector_for(target, name=name))
            op = "rename"
        elif choice < 0.65:
            self.writer.set_confidence(self.rng.choice(entities), round(self.rng.random(), 3))
            op = "set_confidence"
        elif choice < 0.85:
            a, b = self.rng.sample(entities, 2)
            # (from, to, type) already related: the runtime would refuse it too
            with contextlib.suppress(sqlite3.IntegrityError):
                self.writer.create_relation(a, b, self.rng.choice(RELATION_TYPES), strength=round(self.rng.random(), 3))
            op = "create_relation"
        elif choice < 0.9 and (relations := self._relations()):
            self.writer.set_relation_strength(self.rng.choice(relations), round(self.rng.random(), 3))
            op = "relation_strength"
        elif choice < 0.95 and (relations := self._relations()):
            self.writer.delete_relation(self.rng.choice(relations))
            op = "delete_relation"
        else:
            self.writer.delete_entity(self.rng.choice(entities))
            op = "delete_entity"
        self.done[op] = self.done.get(op, 0) + 1
        return op
