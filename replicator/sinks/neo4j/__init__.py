"""Neo4j sink: a pure planner (events -> Cypher rows) and a thin applier (managed transactions), the
destination the runner drives, and the reader of what it writes. Import the submodules: this package
imports nothing, so the graph model is usable without the driver."""
