"""``config check --connect``: reach each server the configuration names, with its credentials, through
the pre-migration checklist's own checks (lifecycle/check.py). Blocks: one round trip per server."""

from __future__ import annotations

from replicator.config.model import MigrationConfig
from replicator.lifecycle.check import Check, check_kafka, check_neo4j, check_qdrant
from replicator.transport.settings import KafkaSettings


def probe(config: MigrationConfig) -> list[Check]:
    """Kafka, then each configured destination: pass, warn or fail with the fix."""
    kafka = config.kafka
    checks = [check_kafka(KafkaSettings(bootstrap_servers=kafka.bootstrap, max_message_bytes=kafka.max_message_bytes,
                                        replication_factor=kafka.replication_factor,
                                        min_insync_replicas=kafka.min_insync_replicas))]  # fmt: skip
    if config.neo4j is not None:
        checks.append(check_neo4j(config.neo4j.settings()))
    if config.qdrant is not None:
        key = config.qdrant.api_key.value if config.qdrant.api_key else None
        checks.append(check_qdrant(config.qdrant.settings(), key))
    return checks
