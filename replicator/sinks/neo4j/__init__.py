"""Neo4j sink: a pure planner (events -> Cypher rows) and a thin applier (managed transactions)."""

from replicator.sinks.neo4j.applier import read_position
from replicator.sinks.neo4j.destination import Neo4jDestination
from replicator.sinks.neo4j.model import GraphModel, relationship_type

__all__ = ["GraphModel", "Neo4jDestination", "read_position", "relationship_type"]
