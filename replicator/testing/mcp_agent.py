"""An agent calling mcp-neo4j-memory's own tools after a cutover to the mcp layout (the reverse-rollback
tests and bench/rollback_pause.py), at a paced rate, in its own session (one server process, serial
over stdio: several agents write side by side). Blocking (a thread); see PacedWriter for what it counts."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from replicator.testing.paced import STARTING, PacedWriter, Unavailable

#: The driver's failures (its type name starts the server's answer) while Neo4j is away or restarting.
AWAY = ("ServiceUnavailable", "SessionExpired", "IncompleteCommit")


class McpSession(Protocol):
    """A session with mcp-neo4j-memory (replicator.demo.mcp_ask.Neo4jMemorySession)."""

    def call(self, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def close(self) -> None: ...


class McpAgent(PacedWriter):
    """Creates, observations added and deleted, relations created and deleted, deletes, through one
    session, which it closes when its thread ends. ``names``: entities it may write to besides the ones
    it creates, which it names ``<prefix> <random tag>``."""

    def __init__(
        self, session: McpSession, names: list[str], seed: int, rate_per_s: float = 10.0, prefix: str = "agent"
    ) -> None:
        super().__init__(rate_per_s, seed)
        self.session, self.names, self.prefix = session, list(names), prefix
        self.relations: list[dict[str, str]] = []

    def _call(self) -> tuple[str, dict[str, Any]]:
        rng, tag = self.rng, uuid.uuid4().hex[:8]
        choice = rng.random()
        if choice < 0.25 or len(self.names) < 2:
            self.names.append(f"{self.prefix} {tag}")
            return "create_entities", {"entities": [{"name": self.names[-1], "type": rng.choice(["person", "tool"]),
                                                     "observations": [f"met {tag}"]}]}  # fmt: skip
        name = rng.choice(self.names)
        if choice < 0.45:
            return "add_observations", {"observations": [{"entityName": name, "observations": [f"fact {tag}"]}]}
        if choice < 0.55:
            return "delete_observations", {"deletions": [{"entityName": name, "observations": ["new"]}]}
        if choice < 0.75:
            rel = {"source": name, "target": rng.choice(self.names), "relationType": rng.choice(["KNOWS", "USES"])}
            self.relations.append(rel)
            return "create_relations", {"relations": [rel]}
        if choice < 0.9 and self.relations:
            return "delete_relations", {"relations": [self.relations.pop(rng.randrange(len(self.relations)))]}
        self.names.remove(name)
        return "delete_entities", {"names": [name]}

    def _write(self) -> str | None:
        tool, args = self._call()
        answer = self.session.call(tool, args)
        if "error" not in answer:
            return None
        if answer["error"].startswith(AWAY) or STARTING in answer["error"]:
            raise Unavailable(answer["error"])
        return f"{tool}: {answer['error']}"

    def _loop(self) -> None:
        try:
            super()._loop()
        except Exception as exc:  # the session's process died: kept for the caller to show, never silent
            self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.session.close()
