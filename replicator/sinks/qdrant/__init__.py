"""The Qdrant destination: entity changes -> one point per entity (vector of its text, its fields)."""

from replicator.sinks.qdrant.applier import read_position
from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings

__all__ = ["QdrantDestination", "QdrantSinkSettings", "read_position"]
