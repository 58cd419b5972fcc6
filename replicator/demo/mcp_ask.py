"""Ask the MCP memory servers (mcp-neo4j-memory, mcp-server-qdrant) about the migrated memory, with
their own code, in their own environments (``.venv-mcp/<env>``, made by ``bash .ci/install`` from a
checkout: the two pin different fastmcp versions and are no dependency of the project). The demo and
the integration tests use it. Blocks; raises ReplicatorError naming the command that creates a
missing environment, or the server's failure."""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from pathlib import Path
from typing import Any, Final

from replicator.errors import Fatal
from replicator.sinks.settings import Neo4jSettings

#: Where the environments are: REPLICATOR_MCP_VENVS, else .venv-mcp/ of the checkout.
VENVS_ENV: Final = "REPLICATOR_MCP_VENVS"
INSTALL: Final = "bash .ci/install (creates .venv-mcp/neo4j-memory and .venv-mcp/server-qdrant)"
_CLIENTS: Final = Path(__file__).resolve().parent / "mcp_clients"


class McpUnavailable(Fatal):
    """An MCP server's environment is missing, or its client script failed."""


def python_of(env: str) -> Path:
    """The python of the environment ``env``. Raises McpUnavailable when it is missing or incomplete."""
    root = Path(os.environ.get(VENVS_ENV) or Path(__file__).resolve().parents[2] / ".venv-mcp")
    python = root / env / "bin" / "python"
    if not python.exists() or not (root / env / ".replicator-install").exists():
        raise McpUnavailable(f"the MCP environment {root / env} is missing", hint=f"run: {INSTALL}")
    return python


def _run(env: str, script: str, request: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
    try:
        done = subprocess.run(
            [str(python_of(env)), "-W", "ignore", str(_CLIENTS / script)],
            input=json.dumps(request), capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise McpUnavailable(f"{script} in {env} did not answer within {timeout_s:g} s", hint="") from exc
    if done.returncode != 0:
        raise McpUnavailable(f"{script} in {env} exited {done.returncode}: {done.stderr[-2000:]}", hint="")
    answers: list[dict[str, Any]] = json.loads(done.stdout)
    return answers


def neo4j_memory(settings: Neo4jSettings, calls: list[dict[str, Any]], timeout_s: float = 300) -> list[dict[str, Any]]:
    """mcp-neo4j-memory's Neo4jMemory tools ``[{"tool", "args"}]`` in order; each answer is
    ``{"ok": result}`` or ``{"error": "<type>: <message>"}`` (the server's own failure)."""
    user, password = settings.auth() or ("", "")
    request = {"uri": settings.uri, "user": user, "password": password, "database": settings.database,
               "calls": calls}  # fmt: skip
    return _run("neo4j-memory", "neo4j_memory.py", request, timeout_s)


class Neo4jMemorySession:
    """One agent's session with mcp-neo4j-memory: one process and driver for many tool calls (a loop of
    writes costs no process start each). ``call`` blocks until the server's tool returned; close() it.
    Raises McpUnavailable (the environment is missing, or the client script died)."""

    def __init__(self, settings: Neo4jSettings) -> None:
        user, password = settings.auth() or ("", "")
        self._proc = subprocess.Popen(
            [str(python_of("neo4j-memory")), "-W", "ignore", str(_CLIENTS / "neo4j_memory.py"), "--lines"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._send({"uri": settings.uri, "user": user, "password": password, "database": settings.database})

    def _send(self, message: dict[str, Any]) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError as exc:
            raise McpUnavailable(f"neo4j_memory.py exited: {self._stderr()}", hint="") from exc

    def _stderr(self) -> str:
        self._proc.kill()
        _, err = self._proc.communicate()
        return err[-2000:]

    def call(self, tool: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """The tool's answer: ``{"ok": result}`` or ``{"error": "<type>: <message>"}``."""
        self._send({"tool": tool, "args": args or {}})
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise McpUnavailable(f"neo4j_memory.py exited: {self._stderr()}", hint="")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


def qdrant_search(
    collection: str,
    queries: list[str],
    *,
    path: Path,
    limit: int = 5,
    timeout_s: float = 600,
    store: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """mcp-server-qdrant's QdrantConnector.search per query, in local mode at ``path`` (no other client
    may hold it), with the packaged all-MiniLM-L6-v2; each answer ``{"ok": [{"content", "metadata"}]}``
    or ``{"error": ...}``. ``store``: entries (``{"content", "metadata"}``) an agent stores first
    through the server's own ``QdrantConnector.store``."""
    request = {"path": str(path), "collection": collection, "queries": queries, "limit": limit,
               "model_site": sysconfig.get_paths()["purelib"], "store": store or []}  # fmt: skip
    return _run("server-qdrant", "server_qdrant.py", request, timeout_s)
