"""How the graph looks in Neo4j (design §6): labels, property names, relationship-type mapping.

Labels and the relation-type / confidence / strength property names are configurable (the seed's
``neo4j-migration.yaml`` ``mapping:`` section: ``entity_label``, ``relation_type_property``,
``confidence_property``, ``strength_property``); the tombstone and position labels are too, so tests
can isolate themselves on a shared server. Pure: no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from replicator.errors import ConfigError
from replicator.events.values import text_of
from replicator.sinks.layouts import CAXTON, LAYOUTS

_NON_WORD: Final = re.compile(r"[^A-Za-z0-9]+")
_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def relationship_type(relation_type: object) -> str:
    """The Neo4j relationship type for a store ``relation_type`` (design §6): upper-case, every run of
    characters outside ``[A-Za-z0-9]`` becomes ``_``, ``R_`` in front if it would start with a digit,
    ``RELATED_TO`` if nothing is left (a BLOB the writer stored is read as UTF-8 with escapes first).
    Pure; the exact value is kept in a property, so the mapping may merge several values into one type
    without losing anything."""
    mapped = _NON_WORD.sub("_", text_of(relation_type)).upper()
    if not mapped.strip("_"):
        return "RELATED_TO"
    return "R_" + mapped if mapped[0].isdigit() else mapped


def quote(name: str) -> str:
    """``name`` as a backtick-quoted Cypher identifier (backticks doubled), safe for any text."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class GraphModel:
    """Names used in the graph. Raises ConfigError on construction for names that are not plain
    identifiers (they are quoted anyway, but a label like ``a b`` is surely a mistake)."""

    entity_label: str = "Entity"
    tombstone_label: str = "ReplicatorTombstone"
    position_label: str = "ReplicatorPosition"
    relation_type_property: str = "relation_type"
    confidence_property: str = "confidence"
    strength_property: str = "strength"
    #: The destination layout (sinks/neo4j/layout.py, docs/layouts.md): caxton or mcp.
    layout: str = CAXTON
    #: Debug aid for tests: every node/relationship also keeps ``_applied``, the list of seqs that
    #: wrote it, so "no event applied twice" can be observed. Off in production (it grows).
    audit: bool = False

    def __post_init__(self) -> None:
        names = {
            "entity label": self.entity_label,
            "tombstone label": self.tombstone_label,
            "position label": self.position_label,
            "relation type property": self.relation_type_property,
            "confidence property": self.confidence_property,
            "strength property": self.strength_property,
        }
        for what, value in names.items():
            if not _IDENTIFIER.match(value):
                raise ConfigError(
                    f"Neo4j {what} {value!r} is not a plain identifier",
                    hint="use letters, digits and _ and start with a letter, e.g. Entity or relation_type",
                )
        if self.layout not in LAYOUTS:
            raise ConfigError(
                f"unknown layout {self.layout!r}", hint=f"use one of {', '.join(LAYOUTS)} (docs/layouts.md)"
            )
        labels = {self.entity_label, self.tombstone_label, self.position_label}
        if len(labels) != 3:
            raise ConfigError(
                "the entity, tombstone and position labels must differ",
                hint="e.g. Entity, ReplicatorTombstone, ReplicatorPosition",
            )

    @property
    def namespace(self) -> str:
        """What one sink owns in a database: the nodes of its entity label. Tombstones, the owner
        record (which store the label replicates) and tombstone collection are scoped to it."""
        return self.entity_label

    def _mapping(self) -> dict[str, str]:
        return {
            "relation_type": self.relation_type_property,
            "confidence": self.confidence_property,
            "strength": self.strength_property,
        }

    def renamed(self, prop: str) -> str:
        """The graph property name for a store column (only the mapped ones change)."""
        return self._mapping().get(prop, prop)

    def columns(self, props: Mapping[str, Any]) -> dict[str, Any]:
        """A node's or relationship's properties under the store's column names: the inverse of
        ``renamed``, for the readers that compare the graph with the store. Pure."""
        column_of = _columns_of(self)  # a full comparison calls this for every node and relationship
        if not column_of:  # nothing renamed (the default mapping): 1.7 -> 0.4 us a relationship
            return dict(props)
        out = {key: value for key, value in props.items() if key not in column_of}
        out.update({column_of[key]: value for key, value in props.items() if key in column_of})
        return out


@functools.lru_cache(maxsize=16)
def _columns_of(model: GraphModel) -> dict[str, str]:
    """Graph property -> store column, for the properties a model renames (a column mapped to its own
    name is not renamed). Do not change the dict."""
    return {graph: column for column, graph in model._mapping().items() if graph != column}


def position_query(model: GraphModel) -> str:
    """Cypher reading the position a sink (``$sink``) stored with its data (design §5), as ``position``:
    the one read of it, for the sink at start and for lag, cutover and rollback."""
    return f"MATCH (p:{quote(model.position_label)} {{sink: $sink}}) RETURN p.position AS position"
