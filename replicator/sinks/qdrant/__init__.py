"""The Qdrant destination: entity changes -> one point per entity (vector of its text, its fields)."""

from replicator.sinks.qdrant.destination import QdrantDestination, QdrantSinkSettings
from replicator.sinks.qdrant.reader import read_position

__all__ = ["QdrantDestination", "QdrantSinkSettings", "read_position"]
