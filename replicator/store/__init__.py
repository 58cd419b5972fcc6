"""Caxton's embedded memory store: its schema (as the writer creates it) and a writer that behaves
like the agent runtime's, for tests, benchmarks and the demo. The replicator never changes how the
real writer works; see ``../shared/STORE.md``."""
