"""The destination layouts of the graph (docs/layouts.md): what a node and a relationship hold beyond
the Caxton mapping (design §6) so that other readers find the memory. The one owner of that format:
the planner writes through it, the reader reads back through it. Pure: no I/O.

* ``caxton`` (the default): design §6, exactly.
* ``mcp``: also what mcp-neo4j-memory (0.4.5) reads and writes. Every entity node carries the entity
  label AND ``:Memory`` (one node serves both mappings), ``type`` = the entity type sanitised to
  ``^[A-Za-z_][A-Za-z0-9_]*$`` (:func:`memory_type`; the exact text stays in ``entity_type``), and
  ``observations`` is always a list of strings (observations the writer did not store as a JSON
  array of strings become a one-element list of their text; the exact value is kept in
  ``caxton_observations``). Relationship types are design §6's, which already match the server's
  pattern. The full-text index ``search`` on ``(name, type, observations)`` of ``:Memory`` is the
  server's own definition. Placeholders, tombstones, detaching and position nodes never carry
  ``:Memory``, and only placeholders (until their entity arrives) are ever connected to memory nodes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from replicator.events.values import text_of
from replicator.sinks.layouts import CAXTON, LAYOUTS, MCP

__all__ = ["CAXTON", "LAYOUTS", "MCP", "memory_type", "node_props", "search_index_statement", "stored_props"]

MEMORY_LABEL: Final = "Memory"
SEARCH_INDEX: Final = "search"
#: Where the mcp layout keeps observations that are no list of strings, exactly as the event had them.
EXACT_OBSERVATIONS: Final = "caxton_observations"

_NOT_IDENTIFIER: Final = re.compile(r"[^A-Za-z0-9_]+")


def memory_type(entity_type: object) -> str:
    """The ``type`` mcp-neo4j-memory accepts for a store ``entity_type``: every run of characters
    outside ``[A-Za-z0-9_]`` becomes one ``_``, a leading digit gets ``_`` in front, nothing left gives
    ``untyped``; letters keep their case (``user-preference`` -> ``user_preference``, ``depends on``
    -> ``depends_on``, ``2fa`` -> ``_2fa``). Deterministic and pure; several texts may map to one
    type, which is why the exact text is always kept in ``entity_type``."""
    mapped = _NOT_IDENTIFIER.sub("_", text_of(entity_type))
    if not mapped:
        return "untyped"
    return "_" + mapped if mapped[0].isdigit() else mapped


def node_props(layout: str, props: Mapping[str, Any]) -> dict[str, Any]:
    """An entity node's properties in ``layout`` from its Caxton-mapping ``props`` (store column
    names renamed, every value as the event carried it). Pure."""
    out = dict(props)
    if layout != MCP:
        return out
    out["type"] = memory_type(props.get("entity_type"))
    observations = props.get("observations")
    if isinstance(observations, list):
        out[EXACT_OBSERVATIONS] = None  # None removes a value an older change left
    else:
        out[EXACT_OBSERVATIONS] = observations
        out["observations"] = [] if observations is None else [text_of(observations)]
    return out


def stored_props(layout: str, props: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`node_props`: a node's properties as the Caxton mapping holds them. Pure."""
    out = dict(props)
    if layout != MCP:
        return out
    out.pop("type", None)
    if EXACT_OBSERVATIONS in out:
        out["observations"] = out.pop(EXACT_OBSERVATIONS)
    return out


def search_index_statement() -> str:
    """mcp-neo4j-memory's own full-text index (same name, label and properties), so the server's
    ``CREATE ... IF NOT EXISTS`` finds it in place."""
    return (
        f"CREATE FULLTEXT INDEX {SEARCH_INDEX} IF NOT EXISTS "
        f"FOR (m:{MEMORY_LABEL}) ON EACH [m.name, m.type, m.observations]"
    )
