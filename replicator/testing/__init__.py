"""Stand-ins for tests, benchmarks and the demo: a writer like Caxton's and a reproducible workload,
a simulated source, change events built by hand, and reading topics back. Production code never
imports this package (tests/unit/test_layering.py checks it)."""
