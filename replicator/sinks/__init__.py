"""Sinks: consumers that apply change events to a destination (Neo4j graph, Qdrant vectors)."""
