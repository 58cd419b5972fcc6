"""Calls the MCP servers' harness scripts in their own test environments (.venv-mcp/, made by
``bash .ci/install``), JSON in and out. A missing environment FAILS the test, naming the command."""

from __future__ import annotations

import json
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
INSTALL = "bash .ci/install (creates .venv-mcp/neo4j-memory and .venv-mcp/server-qdrant)"


def python_of(env: str) -> Path:
    """The python of .venv-mcp/<env>; fails the test when it is missing or incomplete."""
    python = ROOT / ".venv-mcp" / env / "bin" / "python"
    if not python.exists() or not (python.parent.parent / ".replicator-install").exists():
        pytest.fail(f"the MCP test environment .venv-mcp/{env} is missing; run: {INSTALL}", pytrace=False)
    return python


def _run(env: str, script: str, request: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(python_of(env)), "-W", "ignore", str(HERE / script)],
        input=json.dumps(request), capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"{script} in .venv-mcp/{env} exited {done.returncode}:\n{done.stderr[-3000:]}", pytrace=False)
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def neo4j_memory(settings: Any, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """mcp-neo4j-memory's Neo4jMemory tools, in order; each answer ``{"ok": ...}`` or ``{"error": ...}``."""
    user, password = settings.auth() or ("", "")
    request = {"uri": settings.uri, "user": user, "password": password, "database": settings.database,
               "calls": calls}  # fmt: skip
    return _run("neo4j-memory", "neo4j_memory_harness.py", request, timeout=300)


def qdrant_search(collection: str, queries: list[str], *, path: Path, limit: int = 5) -> list[dict[str, Any]]:
    """mcp-server-qdrant's QdrantConnector.search in local mode at ``path`` (no other client may hold it)."""
    request = {"path": str(path), "collection": collection, "queries": queries, "limit": limit,
               "model_site": sysconfig.get_paths()["purelib"]}  # fmt: skip
    return _run("server-qdrant", "server_qdrant_harness.py", request, timeout=600)
