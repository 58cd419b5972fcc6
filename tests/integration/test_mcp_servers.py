"""The MCP memory servers (mcp-neo4j-memory, mcp-server-qdrant) as real clients of the migrated
stores: their own code, from their PyPI packages, in their own test environments (tests/mcp/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from replicator.sinks.settings import Neo4jSettings
from tests.mcp import run

pytestmark = pytest.mark.integration


def test_environments_run_the_servers_own_code(graph: Neo4jSettings, tmp_path: Path) -> None:
    [by_name] = run.neo4j_memory(graph, [{"tool": "find_memories_by_name", "args": {"names": ["no such memory"]}}])
    assert by_name == {"ok": {"entities": [], "relations": []}}
    [found] = run.qdrant_search("no_such_collection", ["anything"], path=tmp_path / "qdrant")
    assert found == {"ok": []}
