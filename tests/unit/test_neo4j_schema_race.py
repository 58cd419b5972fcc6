"""Two instances of a Neo4j sink starting together both create the schema; Neo4j can answer the
second ``CREATE ... IF NOT EXISTS`` with EquivalentSchemaRuleAlreadyExists while the first one's is
being committed (seen in CI: a sink of a two-instance group stopped as 'refused'). The rule exists:
that is the goal of the statement, not a refusal."""

from __future__ import annotations

from typing import Any

import pytest
from neo4j.exceptions import ClientError, Neo4jError

from replicator.sinks.neo4j.applier import create_schema, schema_statements
from replicator.sinks.neo4j.model import GraphModel


def _client_error(code: str) -> Neo4jError:
    """The error as the driver builds it from the server's failure message."""
    return Neo4jError._hydrate_neo4j(code=code, message="An equivalent index already exists")


class _RacingDriver:
    """Answers every other schema statement as a concurrent creator had just made it."""

    def __init__(self, code: str) -> None:
        self.code, self.calls = code, 0

    def execute_query(self, query: Any, **_kw: object) -> None:
        self.calls += 1
        if self.calls % 2 == 0:
            raise _client_error(self.code)


@pytest.mark.parametrize(
    "code",
    [
        "Neo.ClientError.Schema.EquivalentSchemaRuleAlreadyExists",
        "Neo.ClientError.Schema.IndexAlreadyExists",
        "Neo.ClientError.Schema.ConstraintAlreadyExists",
    ],
)
def test_a_schema_rule_made_meanwhile_by_another_instance_is_success(code: str) -> None:
    driver = _RacingDriver(code)
    create_schema(driver, "neo4j", GraphModel())  # type: ignore[arg-type]
    assert driver.calls == len(schema_statements(GraphModel()))


def test_another_client_error_still_raises() -> None:
    driver = _RacingDriver("Neo.ClientError.Security.Unauthorized")
    with pytest.raises(ClientError):
        create_schema(driver, "neo4j", GraphModel())  # type: ignore[arg-type]
