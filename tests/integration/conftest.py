"""Fixtures for tests against the real servers started by ``replicator stack up``.

A server that does not answer FAILS the test that needs it (never skips): a green run must mean the
real Kafka broker and Neo4j server were exercised. Endpoints come from the same environment variables
the replicator reads, defaulting to the local stack.
"""

from __future__ import annotations

from collections.abc import Iterator

import neo4j
import pytest
from confluent_kafka.admin import AdminClient

from replicator.sinks.settings import Neo4jSettings
from replicator.transport.settings import KafkaSettings
from tests.integration.private_neo4j import PrivateNeo4j

_START_HINT = "start the local stack first: .venv/bin/replicator stack up (see README)"


@pytest.fixture(scope="session")
def kafka() -> KafkaSettings:
    settings = KafkaSettings.from_env()
    admin = AdminClient({**settings.common(), "log_level": 0})
    try:
        admin.list_topics(timeout=10)
    except Exception as exc:
        pytest.fail(f"Kafka at {settings.bootstrap_servers} is not answering ({exc}); {_START_HINT}", pytrace=False)
    return settings


@pytest.fixture(scope="session")
def graph() -> Neo4jSettings:
    settings = Neo4jSettings.from_env()
    try:
        with neo4j.GraphDatabase.driver(settings.uri, auth=settings.auth()) as driver:
            driver.verify_connectivity()
    except Exception as exc:
        pytest.fail(f"Neo4j at {settings.uri} is not answering ({exc}); {_START_HINT}", pytrace=False)
    return settings


@pytest.fixture(scope="module")
def private_neo4j(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateNeo4j]:
    """A Neo4j of this test module's own (tests/integration/private_neo4j.py), stopped even when it
    failed to start."""
    server = PrivateNeo4j(tmp_path_factory.mktemp("stack"))
    try:
        server.start()
        yield server
    finally:
        server.stop()
