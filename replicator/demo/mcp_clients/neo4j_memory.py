"""Runs mcp-neo4j-memory's own ``Neo4jMemory`` tools; executed by .venv-mcp/neo4j-memory's python.

stdin: JSON ``{"uri", "user", "password", "database", "calls": [{"tool": name, "args": {...}}]}``;
stdout: JSON list, one ``{"ok": result}`` or ``{"error": "<type>: <message>"}`` per call, in order.
With ``--lines`` (an agent's session, one connection for many calls): the first stdin line is the
connection (no ``calls``), then one call per line, each answered by one line as soon as it is done.
The tools are called exactly as the server calls them (its pydantic models build the arguments), so
a graph this server cannot read fails here as it would fail an agent. Never imported by the project.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from mcp_neo4j_memory.neo4j_memory import Entity, Neo4jMemory, ObservationAddition, ObservationDeletion, Relation
from neo4j import AsyncGraphDatabase


async def _call(memory: Neo4jMemory, tool: str, args: dict[str, Any]) -> Any:  # noqa: PLR0911, ANN401 - one return per tool; JSON out
    if tool == "read_graph":
        return (await memory.read_graph()).model_dump()
    if tool == "search_memories":
        return (await memory.search_memories(args["query"])).model_dump()
    if tool == "find_memories_by_name":
        return (await memory.find_memories_by_name(args["names"])).model_dump()
    if tool == "create_entities":
        done = await memory.create_entities([Entity(**e) for e in args["entities"]])
        return [e.model_dump() for e in done]
    if tool == "add_observations":
        return await memory.add_observations([ObservationAddition(**o) for o in args["observations"]])
    if tool == "create_relations":
        made = await memory.create_relations([Relation(**r) for r in args["relations"]])
        return [r.model_dump() for r in made]
    if tool == "delete_entities":
        await memory.delete_entities(args["names"])
        return None
    if tool == "delete_observations":
        await memory.delete_observations([ObservationDeletion(**d) for d in args["deletions"]])
        return None
    if tool == "delete_relations":
        await memory.delete_relations([Relation(**r) for r in args["relations"]])
        return None
    raise ValueError(f"unknown tool {tool!r}")


async def _answer(memory: Neo4jMemory, call: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"ok": await _call(memory, call["tool"], call.get("args", {}))}
    except Exception as exc:  # the server's own failure is the answer the test asserts on
        return {"error": f"{type(exc).__name__}: {exc}"}


def _driver(request: dict[str, Any]) -> Any:  # noqa: ANN401 - the server's own driver type
    return AsyncGraphDatabase.driver(request["uri"], auth=(request["user"], request["password"]),
                                     database=request.get("database") or "neo4j")  # fmt: skip


async def _main(request: dict[str, Any]) -> list[dict[str, Any]]:
    driver = _driver(request)
    try:
        memory = Neo4jMemory(driver)
        return [await _answer(memory, call) for call in request["calls"]]
    finally:
        await driver.close()


async def _lines() -> None:
    driver = _driver(json.loads(sys.stdin.readline()))
    try:
        memory = Neo4jMemory(driver)
        for line in sys.stdin:
            sys.stdout.write(json.dumps(await _answer(memory, json.loads(line))) + "\n")
            sys.stdout.flush()
    finally:
        await driver.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--lines"]:
        asyncio.run(_lines())
    else:
        json.dump(asyncio.run(_main(json.load(sys.stdin))), sys.stdout)
