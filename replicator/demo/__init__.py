"""The demo (``replicator demo``): a live sample store replicated to Neo4j and Qdrant, lag, then a
cutover; and the supervisor of the daemons it (and the live tests) run as child processes."""
