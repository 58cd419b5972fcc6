"""The Qdrant destination: entity changes -> one point per entity (vector of its text, its fields),
and the reader of what it writes. Import the submodules: this package imports nothing, so a command
that only declares options does not load the client."""
