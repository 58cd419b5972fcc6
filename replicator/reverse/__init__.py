"""Reverse replication after a cutover: Neo4j's changelog (the project's server plugin) back into the store."""
