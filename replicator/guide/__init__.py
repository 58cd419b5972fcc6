"""The seed migration guide's tools: ``replicator export | import | stats | diff | validate`` on the
command line (docs/validation.md)."""
