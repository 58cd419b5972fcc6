"""Which servers get one relation upsert statement per batch (relationship types as parameters,
``$(row.type)``: Neo4j 5.26 and later) and which one statement per type (older 5.x, or a version that
cannot be read: the per-type statements work on every server)."""

from __future__ import annotations

from typing import Any

import pytest
from neo4j.exceptions import Neo4jError

from replicator.sinks.neo4j.applier import supports_dynamic_types


class _Server:
    """Answers ``dbms.components()`` with ``version``, or refuses it with ``code``."""

    def __init__(self, version: str | None = None, code: str | None = None) -> None:
        self.version, self.code = version, code

    def execute_query(self, _query: Any, **_kw: object) -> tuple[list[dict[str, Any]], None, None]:
        if self.code is not None:
            raise Neo4jError._hydrate_neo4j(code=self.code, message="refused")
        return [{"version": self.version}], None, None


@pytest.mark.parametrize(
    ("version", "dynamic"),
    [("5.26.30", True), ("5.26.0", True), ("2025.01.0", True), ("5.25.1", False), ("5.1.0", False), ("dev", False)],
)
def test_types_are_parameters_from_5_26_on(version: str, dynamic: bool) -> None:
    assert supports_dynamic_types(_Server(version), "neo4j") is dynamic  # type: ignore[arg-type]


def test_a_server_that_will_not_say_gets_a_statement_per_type() -> None:
    server = _Server(code="Neo.ClientError.Security.Forbidden")
    assert supports_dynamic_types(server, "neo4j") is False  # type: ignore[arg-type]
