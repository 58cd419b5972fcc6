"""Change events: the Avro envelope (op, before, after, source, ts_ms) that crosses Kafka.

Schemas live in the repository's top-level ``schemas/`` directory, shipped inside the package as
``replicator/schemas`` (a symlink).
"""
