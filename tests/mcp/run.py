"""The MCP servers' own code for the tests (replicator.demo.mcp_ask): a missing environment FAILS
the test, naming the command that creates it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from replicator.demo import mcp_ask
from replicator.sinks.settings import Neo4jSettings


def neo4j_memory(settings: Neo4jSettings, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        return mcp_ask.neo4j_memory(settings, calls)
    except mcp_ask.McpUnavailable as exc:
        pytest.fail(f"{exc}; {exc.hint}", pytrace=False)


def qdrant_search(
    collection: str, queries: list[str], *, path: Path, limit: int = 5, store: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    try:
        return mcp_ask.qdrant_search(collection, queries, path=path, limit=limit, store=store)
    except mcp_ask.McpUnavailable as exc:
        pytest.fail(f"{exc}; {exc.hint}", pytrace=False)


def neo4j_memory_session(settings: Neo4jSettings) -> mcp_ask.Neo4jMemorySession:
    """An agent's session with mcp-neo4j-memory (close() it)."""
    try:
        return mcp_ask.Neo4jMemorySession(settings)
    except mcp_ask.McpUnavailable as exc:
        pytest.fail(f"{exc}; {exc.hint}", pytrace=False)
