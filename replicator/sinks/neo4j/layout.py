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

Read back (the readers, and reverse replication of what agents write after a cutover): ``type`` is the
server's, so when it is not the sanitised ``entity_type`` a writer changed it (mcp-neo4j-memory's
``create_entities`` of an existing name, or creates a node with ``type`` alone) and the entity's type
is ``type``; the exact ``caxton_observations`` hold only while ``observations`` is still their
one-element list; a relationship without its exact-text property is named by its type
(:func:`relation_type_of`, both layouts). Nodes another client creates with ``:Memory`` alone are
adopted into the namespace by the changelog plugin (:func:`adopted_labels`, docs/reverse.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from replicator.events.values import text_of
from replicator.sinks.layouts import CAXTON, LAYOUTS, MCP

__all__ = [
    "CAXTON", "LAYOUTS", "MCP", "adopted_labels", "memory_type", "node_props", "relation_type_of",
    "search_index_statement", "stored_props",
]  # fmt: skip

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
    """Inverse of :func:`node_props`: a node's properties as the Caxton mapping holds them, also for a
    node an MCP client wrote or changed. In the mcp layout: ``type`` gives the entity type when the
    node has no ``entity_type`` or ``type`` is not its sanitised form (a writer changed ``type``);
    ``caxton_observations`` give the observations while ``observations`` is still their one-element
    list (a writer that changed the list changed the observations). Pure."""
    out = dict(props)
    if layout != MCP:
        return out
    kind = out.pop("type", None)
    if kind is not None and (out.get("entity_type") is None or memory_type(out["entity_type"]) != kind):
        out["entity_type"] = kind
    if EXACT_OBSERVATIONS in out:
        exact = out.pop(EXACT_OBSERVATIONS)
        if out.get("observations") == ([] if exact is None else [text_of(exact)]):  # as node_props wrote them
            out["observations"] = exact
    return out


def relation_type_of(props: Mapping[str, Any], graph_type: str) -> Any:  # noqa: ANN401 - the value as stored
    """A relationship's ``relation_type`` from its properties (under the store's column names): the exact
    text the sink keeps, else its Neo4j type (a relationship another client made: mcp-neo4j-memory's
    ``create_relations`` and agents' Cypher name a relation by its type alone). Both layouts. Pure."""
    value = props.get("relation_type")
    return graph_type if value is None else value


def adopted_labels(layout: str) -> tuple[str, ...]:
    """The labels whose new nodes (no entity label, no id) the changelog plugin adopts as entities of
    the namespace after a cutover: ``:Memory`` in the mcp layout (mcp-neo4j-memory creates nodes with
    it alone), none in the caxton layout."""
    return (MEMORY_LABEL,) if layout == MCP else ()


def search_index_statement() -> str:
    """mcp-neo4j-memory's own full-text index (same name, label and properties), so the server's
    ``CREATE ... IF NOT EXISTS`` finds it in place."""
    return (
        f"CREATE FULLTEXT INDEX {SEARCH_INDEX} IF NOT EXISTS "
        f"FOR (m:{MEMORY_LABEL}) ON EACH [m.name, m.type, m.observations]"
    )
