"""A sink of one layout on a destination holding the other is refused by name (docs/layouts.md),
never mixing the two: Neo4j by the namespace's owner node, Qdrant by the collection's vectors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from replicator.embedding import load_model
from replicator.errors import ConfigError
from replicator.sinks.neo4j.applier import NamespaceTaken
from replicator.sinks.neo4j.destination import Neo4jDestination
from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings
from replicator.sinks.settings import Neo4jSettings, QdrantSettings
from tests.integration.test_destination_contract import Feed, Neo4jTarget, entity

pytestmark = pytest.mark.integration


def test_a_neo4j_sink_of_the_other_layout_is_refused_by_name(graph: Neo4jSettings) -> None:
    mcp = Neo4jTarget(graph, "mcp")
    try:
        assert mcp.destination.start() is None
        feed = Feed(mcp.tables)
        mcp.destination.apply(feed.batch(feed.change("entities", "c", 1, 1, entity(1, "Ada"))))
        other = Neo4jDestination("contract", graph, dataclasses.replace(mcp.model, layout="caxton"))
        try:
            other.start()
            with pytest.raises(NamespaceTaken, match=r"holds the mcp layout; this sink writes the caxton layout"):
                other.apply(feed.batch(feed.change("entities", "c", 2, 2, entity(2, "Bob"))))
        finally:
            other.close()
        assert mcp.entities() == {1: "Ada"}  # nothing of the refused batch was written
    finally:
        mcp.drop()


def test_a_qdrant_sink_of_the_other_layout_is_refused_by_name(tmp_path: Path) -> None:
    model = load_model()
    path = tmp_path / "qdrant"
    for layout, ok in (("mcp", True), ("caxton", False)):
        settings = QdrantSinkSettings(QdrantSettings(path=path, collection="c", layout=layout), sink="s")
        destination = QdrantDestination(settings, model=model)
        try:
            if ok:
                destination.start()
            else:
                with pytest.raises(ConfigError, match="holds the mcp layout; this sink writes the caxton layout"):
                    destination.start()
        finally:
            destination.close()
